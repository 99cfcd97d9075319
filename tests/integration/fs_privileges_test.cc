// A mount by a user whose role lacks privileges: the mount asks once (HasPrivilegeOnEntities),
// snapshot.json lists what is missing per VM, and each operation that needs a missing privilege
// is refused at once with EACCES and a log line naming the privilege, the entity and the
// operation, before the server is asked to do anything.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "privileges_support.h"
#include "support/fixtures.h"
#include "support/server_leftovers.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "vix/leftovers.h"
#include "vsphere/client.h"
#include "vsphere/method_access.h"

using vixtest::read_text;
using vixtest::Simulator;
using vixtest::TempDir;
using vixtest::VixfsDaemon;

namespace {

namespace fs = std::filesystem;
namespace vs = vix::vsphere;

class FsPrivileges : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    // Without -user any pair logs in; "admin", named by no permission, holds every privilege.
    sim_ = Simulator::start_with_samples(dir_.file("samples"), 32, "", &error);
    ASSERT_NE(sim_, nullptr) << error;
    admin_ = sim_->login("admin", "p", &error);
    ASSERT_NE(admin_, nullptr) << error;
    auto sc = admin_->service_content();
    ASSERT_TRUE(sc.ok()) << sc.error().message;
    root_ = sc->root_folder;
    vm_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    std::ofstream(dir_.file("pw")) << "p\n";
    mnt_ = dir_.file("mnt");
  }
  // `user` gets a backup role without `drop` on the whole inventory.
  void restrict(const std::string& user, const std::vector<std::string>& drop) {
    const int32_t role =
        vixtest::add_role(*admin_, "role-" + user, vixtest::backup_privileges_without(drop));
    ASSERT_GT(role, 0);
    vixtest::set_permission(*admin_, "Folder", root_, user, role, true);
  }
  std::vector<std::string> args(const std::string& user) {
    return sim_->mount_args(user, dir_.file("pw"), "file");
  }
  std::string vm_dir() const { return mnt_ + "/sim/" + vm_; }
  std::vector<const vs::Snapshot*> snapshots() {
    inventory_ = admin_->inventory();
    EXPECT_TRUE(inventory_.ok()) << inventory_.error().message;
    std::vector<const vs::Snapshot*> out;
    if (inventory_.ok() && inventory_->find_vm(vm_))
      out = vs::flatten(inventory_->find_vm(vm_)->snapshots);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<vs::Client> admin_;
  vix::Result<vs::Inventory> inventory_ = vix::fail(VIX_E_FAIL, "not read");
  std::string root_, vm_, mnt_;
};

TEST_F(FsPrivileges, ReadingAndSnapshotsRefusedNamingThePrivilege) {
  restrict("reader",
           {"VirtualMachine.Provisioning.DiskRandomRead", "VirtualMachine.State.CreateSnapshot"});
  const size_t before = snapshots().size();
  VixfsDaemon d(args("reader"), mnt_, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();

  const std::string json = read_text(vm_dir() + "/current/snapshot.json");
  EXPECT_NE(json.find("\"privileges\": {\"checked\":true,\"missing\":["), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"privilege\":\"VirtualMachine.State.CreateSnapshot\""), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"privilege\":\"VirtualMachine.Provisioning.DiskRandomRead\""),
            std::string::npos)
      << json;

  EXPECT_EQ(::mkdir((vm_dir() + "/@nightly").c_str(), 0755), -1);
  EXPECT_EQ(errno, EACCES);
  EXPECT_NE(d.log().find("@nightly: mkdir: refused (EACCES): snapshot on " + vm_ +
                         ": missing privilege VirtualMachine.State.CreateSnapshot on " + vm_),
            std::string::npos)
      << d.log();
  EXPECT_EQ(snapshots().size(), before) << "the server was asked anyway";

  EXPECT_EQ(::open((vm_dir() + "/current/scsi0-0.img").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, EACCES);
  EXPECT_NE(
      d.log().find("read on " + vm_ +
                   ": missing privilege VirtualMachine.Provisioning.DiskRandomRead on " + vm_),
      std::string::npos)
      << d.log();
  EXPECT_TRUE(d.stop()) << d.log();
}

// Without RemoveSnapshot and Global.DisableMethods: mkdir works (Storage vMotion not blocked, with
// the privilege in the warning), rmdir is EACCES, and the unmount's removal is refused by the
// server with its own words; the snapshot stays for someone who may remove it.
TEST_F(FsPrivileges, RemovalRefusedAndBlockingSkippedNamingThePrivilege) {
  restrict("maker", {"VirtualMachine.State.RemoveSnapshot", "Global.DisableMethods"});
  const size_t before = snapshots().size();
  {
    VixfsDaemon d(args("maker"), mnt_, dir_.file("log"));
    ASSERT_TRUE(d.mounted()) << d.log();
    ASSERT_EQ(::mkdir((vm_dir() + "/@kept").c_str(), 0755), 0) << d.log();
    EXPECT_NE(d.log().find("not blocked: disable-methods on " + vm_ +
                           ": missing privilege Global.DisableMethods on " + root_),
              std::string::npos)
        << d.log();
    EXPECT_TRUE(vixtest::disabled_methods(*admin_, vm_).empty());
    EXPECT_EQ(::rmdir((vm_dir() + "/@kept").c_str()), -1);
    EXPECT_EQ(errno, EACCES);
    EXPECT_NE(d.log().find("remove-snapshot on " + vm_ +
                           ": missing privilege VirtualMachine.State.RemoveSnapshot on " + vm_),
              std::string::npos)
        << d.log();
    EXPECT_TRUE(d.stop()) << d.log();
    EXPECT_NE(d.log().find("Permission to perform this operation was denied. (privilege "
                           "VirtualMachine.State.RemoveSnapshot"),
              std::string::npos)
        << d.log();
  }
  ASSERT_EQ(snapshots().size(), before + 1);
  for (const vs::Snapshot& s : vixtest::tool_snapshots(*admin_, "vixfs")) {
    EXPECT_TRUE(admin_->remove_snapshot(s.moref, false).ok());
  }
}

}  // namespace
