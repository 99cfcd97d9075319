// `vixdisk doctor` against the simulator: the server's version and type, the certificate it
// presents (the simulator's own thumbprints), the privilege table for the administrator (all
// granted, exit 0) and for a restricted user set up through the API (the missing IDs listed,
// exit 5), the transports that can work from this host, and --json.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>

#include "integration/privileges_support.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "support/vsphere_sim.h"

using vixtest::Child;
using vixtest::ChildOptions;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

class Doctor : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sim_ = Simulator::start("", false, &error_).release();
    std::ofstream(dir_->file("pw")) << "secret\n";
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(sim_, nullptr) << error_; }

  // Runs doctor as `user`; the exit status, the output in *out.
  int doctor(const std::string& user, const std::vector<std::string>& more, std::string* out) {
    ChildOptions o;
    o.argv = {VIXFS_VIXDISK,     "doctor",
              "--server",        sim_->get("VCSIM_HOST"),
              "--port",          sim_->get("VCSIM_PORT"),
              "--user",          user,
              "--password-file", dir_->file("pw"),
              "--thumbprint",    sim_->get("VCSIM_SHA256")};
    o.argv.insert(o.argv.end(), more.begin(), more.end());
    o.log = dir_->file(user + ".log");
    o.truncate_log = true;
    Child c(o);
    EXPECT_TRUE(c.wait_exit(std::chrono::minutes(2))) << c.log();
    *out = c.log();
    return WIFEXITED(c.status()) ? WEXITSTATUS(c.status()) : -1;
  }

  static TempDir* dir_;
  static Simulator* sim_;
  static std::string error_;
};
TempDir* Doctor::dir_ = nullptr;
Simulator* Doctor::sim_ = nullptr;
std::string Doctor::error_;

bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST_F(Doctor, AdministratorHasEverythingAndTheServerIsDescribed) {
  std::string out;
  EXPECT_EQ(doctor("admin-doc", {}, &out), 0) << out;
  EXPECT_TRUE(has(out, "api         VirtualCenter")) << out;
  EXPECT_TRUE(has(out, "(vCenter)")) << out;
  EXPECT_TRUE(has(out, "build ")) << out;
  EXPECT_TRUE(has(out, "SHA-1 " + sim_->get("VCSIM_SHA1"))) << out;
  EXPECT_TRUE(has(out, "SHA-256 " + sim_->get("VCSIM_SHA256"))) << out;
  const std::string vm0 = sim_->get("VCSIM_VM_DC0_H0_VM0");
  EXPECT_TRUE(has(out, "VirtualMachine.State.CreateSnapshot")) << out;
  EXPECT_TRUE(has(out, vm0)) << out;
  EXPECT_FALSE(has(out, " no\n")) << out;  // no privilege row says "no"
  EXPECT_FALSE(has(out, "missing privilege")) << out;
  // The simulator's datastore is a folder of this host: the file transport can work.
  EXPECT_TRUE(has(out, "file    ok  datastore LocalDS_0")) << out;
  EXPECT_TRUE(has(out, "https   ok")) << out;
  EXPECT_TRUE(has(out, "nbd     ")) << out;  // a line per host's NFC port, reachable or not
  EXPECT_TRUE(has(out, "hotadd  ")) << out;
  EXPECT_TRUE(has(out, "status      ok")) << out;
}

TEST_F(Doctor, RestrictedUserGetsTheMissingIdsAndExitFive) {
  std::string err;
  auto admin = sim_->login("admin-setup", "x", &err);
  ASSERT_NE(admin, nullptr) << err;
  auto sc = admin->service_content();
  ASSERT_TRUE(sc.ok()) << sc.error().message;
  int32_t role =
      vixtest::add_role(*admin, "doctor-restricted",
                        vixtest::backup_privileges_without(
                            {"VirtualMachine.State.CreateSnapshot", "Global.DisableMethods"}));
  ASSERT_GE(role, 0);
  vixtest::set_permission(*admin, "Folder", sc->root_folder, "backup-doc", role, true);

  const std::string vm0 = sim_->get("VCSIM_VM_DC0_H0_VM0");
  std::string out;
  EXPECT_EQ(doctor("backup-doc", {"DC0_H0_VM0"}, &out), 5) << out;
  EXPECT_TRUE(has(out, "snapshot: missing privilege VirtualMachine.State.CreateSnapshot on " + vm0))
      << out;
  EXPECT_TRUE(
      has(out, "disable-methods: missing privilege Global.DisableMethods on " + sc->root_folder))
      << out;
  EXPECT_FALSE(has(out, "missing privilege VirtualMachine.State.RemoveSnapshot")) << out;
  EXPECT_FALSE(has(out, sim_->get("VCSIM_VM_DC0_H0_VM1") + " ")) << out;  // only the VM named
  EXPECT_TRUE(has(out, "status      privileges-missing")) << out;

  // Hot-add's privileges are the proxy VM's, checked only when there is one.
  EXPECT_FALSE(has(out, "hotadd: missing")) << out;
  const std::string proxy = sim_->get("VCSIM_VM_DC0_H0_VM1");
  std::ofstream(dir_->file("proxy.conf")) << "vixfs.hotadd.proxyVm = \"" << proxy << "\"\n";
  EXPECT_EQ(doctor("backup-doc", {"DC0_H0_VM0", "--config", dir_->file("proxy.conf")}, &out), 5)
      << out;
  EXPECT_TRUE(has(out, "hotadd  ok  proxy VM: vixfs.hotadd.proxyVm = " + proxy)) << out;
  EXPECT_TRUE(
      has(out, "hotadd: missing privilege VirtualMachine.Config.AddExistingDisk on " + proxy))
      << out;
  EXPECT_TRUE(has(out, "hotadd: missing privilege Datastore.AllocateSpace on ")) << out;

  EXPECT_EQ(doctor("backup-doc", {"DC0_H0_VM0", "--json"}, &out), 5) << out;
  EXPECT_TRUE(has(out, "\"apiType\":\"VirtualCenter\"")) << out;
  EXPECT_TRUE(has(out, "\"sha1\":\"" + sim_->get("VCSIM_SHA1") + "\"")) << out;
  EXPECT_TRUE(has(out,
                  "{\"operation\":\"snapshot\",\"privilege\":"
                  "\"VirtualMachine.State.CreateSnapshot\",\"entity\":\"" +
                      vm0 + "\",\"granted\":false}"))
      << out;
  EXPECT_TRUE(has(out, "\"missing\":[{\"operation\":\"snapshot\"")) << out;
  EXPECT_TRUE(has(out, "\"status\":\"privileges-missing\"")) << out;
}

}  // namespace

TEST_F(Doctor, NoTransportIsExitSix) {
  std::string err;
  auto admin = sim_->login("admin-setup6", "x", &err);
  ASSERT_NE(admin, nullptr) << err;
  auto sc = admin->service_content();
  ASSERT_TRUE(sc.ok()) << sc.error().message;
  int32_t role = vixtest::add_role(
      *admin, "doctor-no-download",
      vixtest::backup_privileges_without({"VirtualMachine.Provisioning.GetVmFiles"}));
  ASSERT_GE(role, 0);
  vixtest::set_permission(*admin, "Folder", sc->root_folder, "nodownload-doc", role, true);

  // The datastore mapped to a folder this host lacks, no NFC port reachable, no RDM, no proxy
  // VM, and https without GetVmFiles: nothing can read the disks.
  std::ofstream(dir_->file("nothing.conf"))
      << "vixfs.datastore.LocalDS_0 = \"" << dir_->file("no-such-folder") << "\"\n";
  std::string out;
  EXPECT_EQ(doctor("nodownload-doc", {"DC0_H0_VM0", "--config", dir_->file("nothing.conf")}, &out),
            6)
      << out;
  EXPECT_TRUE(has(out, "file    no  datastore LocalDS_0")) << out;
  EXPECT_TRUE(has(out, "https   no  ")) << out;
  EXPECT_TRUE(has(
      out, "lacks VirtualMachine.Provisioning.GetVmFiles on " + sim_->get("VCSIM_VM_DC0_H0_VM0")))
      << out;
  EXPECT_TRUE(has(out, "status      no-transport")) << out;

  // An NBD server that answers makes nbd possible: then only the privilege is missing.
  std::ofstream(dir_->file("nbd.conf"))
      << "vixfs.datastore.LocalDS_0 = \"" << dir_->file("no-such-folder") << "\"\n"
      << "vixfs.nbd.server = \"127.0.0.1:" << sim_->get("VCSIM_PORT") << "\"\n";
  EXPECT_EQ(doctor("nodownload-doc", {"DC0_H0_VM0", "--config", dir_->file("nbd.conf")}, &out), 5)
      << out;
  EXPECT_TRUE(has(out, "nbd     ok  vixfs.nbd.server 127.0.0.1:")) << out;
  EXPECT_TRUE(has(out, "download: missing privilege VirtualMachine.Provisioning.GetVmFiles"))
      << out;
}
