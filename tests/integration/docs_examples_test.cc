// The scripts of docs/examples run as a user would run them, against a vixfs mount of the
// simulator's sample VMs: docs/examples/backup-from-the-shell.sh backs up a running VM with
// mkdir, cp --sparse=always and rmdir, and restores a file from the copy by loop-mounting it.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "support/server_leftovers.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "vix/leftovers.h"
#include "vsphere/client.h"
#include "vsphere/method_access.h"

using vixtest::read_text;
using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
using vixtest::VixfsDaemon;

namespace {

namespace fs = std::filesystem;
namespace vs = vix::vsphere;

const std::string kScript =
    std::string(VIXFS_SOURCE_DIR) + "/docs/examples/backup-from-the-shell.sh";

class DocsExamples : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = Simulator::start_with_samples(dir_.file("samples"), 32, "-user u:p", &error);
    ASSERT_NE(sim_, nullptr) << error;
    std::ofstream(dir_.file("pw")) << "p\n";
    client_ = sim_->login("u", "p", &error);
    ASSERT_NE(client_, nullptr) << error;
    vm_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
  }
  std::vector<std::string> args() { return sim_->mount_args("u", dir_.file("pw"), "file"); }
  // Snapshots of the VM and its disabled methods: what a backup must not leave behind.
  size_t snapshots() {
    auto inv = client_->inventory();
    EXPECT_TRUE(inv.ok()) << inv.error().message;
    return inv.ok() && inv->find_vm(vm_) ? vs::flatten(inv->find_vm(vm_)->snapshots).size() : 0;
  }
  std::vector<std::string> disabled() { return vixtest::disabled_methods(*client_, vm_); }
  // The VM's live disk as qemu-img reads it (the simulator's snapshot names the same chain).
  std::string live_disk_raw() {
    auto inv = client_->inventory();
    EXPECT_TRUE(inv.ok() && inv->find_vm(vm_) && !inv->find_vm(vm_)->disks.empty());
    if (!inv.ok() || !inv->find_vm(vm_) || inv->find_vm(vm_)->disks.empty()) return "";
    const std::string local = sim_->local_file(inv->find_vm(vm_)->disks[0].file_name());
    const std::string raw = dir_.file("live.raw");
    run_ok("qemu-img convert -q -O raw " + sh_quote(local) + " " + sh_quote(raw));
    return raw;
  }

  TempDir dir_;
  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<vs::Client> client_;
  std::string vm_;
};

TEST_F(DocsExamples, BackupFromTheShellCopiesTheVmAndRestoresAFile) {
  const size_t before = snapshots();
  const std::string mnt = dir_.file("mnt"), dest = dir_.file("backup");
  VixfsDaemon d(args(), mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  auto r = run(sh_quote(kScript) + " " + sh_quote(mnt + "/sim/" + vm_) + " " + sh_quote(dest) +
               " changed.txt 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output << d.log();

  // The copy is the disk, sparse, with checksums that verify; the snapshot is gone.
  const std::string image = dest + "/scsi0-0.img";
  EXPECT_EQ(run("cmp " + sh_quote(live_disk_raw()) + " " + sh_quote(image)).exit_code, 0);
  struct stat st {};
  ASSERT_EQ(stat(image.c_str(), &st), 0);
  EXPECT_LT(st.st_blocks * 512, st.st_size / 2) << "the copy is not sparse";
  EXPECT_EQ(run("cd " + sh_quote(dest) + " && sha256sum -c --quiet SHA256SUMS").exit_code, 0);
  EXPECT_NE(read_text(dest + "/snapshot.json").find("Made by vixfs on "), std::string::npos);
  EXPECT_EQ(read_text(dest + "/restored/changed.txt"),
            "This file exists only in the delta child.\n");
  EXPECT_EQ(snapshots(), before) << d.log();
  EXPECT_TRUE(disabled().empty());
  EXPECT_TRUE(d.stop()) << d.log();
}

// A copy that fails (DEST cannot be made) still removes the snapshot.
TEST_F(DocsExamples, BackupFromTheShellRemovesTheSnapshotWhenTheCopyFails) {
  const size_t before = snapshots();
  const std::string mnt = dir_.file("mnt");
  std::ofstream(dir_.file("a-file")) << "x";
  VixfsDaemon d(args(), mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  auto r = run(sh_quote(kScript) + " " + sh_quote(mnt + "/sim/" + vm_) + " " +
               sh_quote(dir_.file("a-file") + "/backup") + " 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(d.log().find("/@backup-"), std::string::npos) << d.log();
  EXPECT_EQ(snapshots(), before) << d.log();
  EXPECT_TRUE(disabled().empty());
  EXPECT_TRUE(d.stop()) << d.log();
}

}  // namespace
