// Snapshots made and removed from the mounted tree: mkdir SERVER/VM/@NAME makes one (its disks
// read as qemu-img reads the snapshot's chain), rmdir removes it (only those vixfs made unless
// -o allow-remove-snapshots; EBUSY while a disk is open), Storage vMotion is blocked while it
// exists, and neither an unmount nor a killed daemon leaves a snapshot or a disabled method.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
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

class FsSnapshots : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sim_ = Simulator::start_with_samples(dir_->file("samples"), 32, "-user u:p -cbt", &error_)
               .release();
    std::ofstream(dir_->file("pw")) << "p\n";
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    std::string err;
    client_ = sim_->login("u", "p", &err);
    ASSERT_NE(client_, nullptr) << err;
    vm_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    mnt_ = tmp_.file("mnt");
  }
  void TearDown() override {
    // Whatever a test did, the next one starts without snapshots of ours or disabled methods.
    EXPECT_EQ(vixfs_snapshots().size(), 0u);
    EXPECT_EQ(disabled().size(), 0u);
  }

  std::vector<std::string> args(const std::vector<std::string>& more = {}) {
    std::vector<std::string> a = sim_->mount_args("u", dir_->file("pw"), "file");
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  std::string vm_dir() const { return mnt_ + "/sim/" + vm_; }

  std::vector<vs::Snapshot> vixfs_snapshots() { return vixtest::tool_snapshots(*client_, "vixfs"); }
  std::vector<std::string> disabled() { return vixtest::disabled_methods(*client_, vm_); }
  static int mkdir_errno(const std::string& path) {
    return ::mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
  }
  static int rmdir_errno(const std::string& path) { return ::rmdir(path.c_str()) == 0 ? 0 : errno; }

  static TempDir* dir_;
  static Simulator* sim_;
  static std::string error_;
  TempDir tmp_;
  std::unique_ptr<vs::Client> client_;
  std::string vm_, mnt_;
};
TempDir* FsSnapshots::dir_ = nullptr;
Simulator* FsSnapshots::sim_ = nullptr;
std::string FsSnapshots::error_;

// mkdir @nightly returns with the snapshot made and its folder filled; its disk reads as qemu-img
// reads the chain the snapshot names; RelocateVM_Task is disabled while it exists; an open disk
// makes rmdir EBUSY; rmdir then removes the snapshot, both its folders and the block.
TEST_F(FsSnapshots, MkdirMakesASnapshotAndRmdirRemovesIt) {
  VixfsDaemon d(args(), mnt_, tmp_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string at = vm_dir() + "/@nightly";
  ASSERT_EQ(mkdir_errno(at), 0) << strerror(errno) << d.log();

  auto made = vixfs_snapshots();
  ASSERT_EQ(made.size(), 1u) << d.log();
  const vs::Snapshot snap = made[0];
  EXPECT_EQ(snap.name, "nightly");
  auto maker = vix::parse_snapshot_description(snap.description);
  ASSERT_TRUE(maker.has_value()) << snap.description;
  EXPECT_EQ(maker->pid, d.pid());
  EXPECT_EQ(disabled(), std::vector<std::string>{"RelocateVM_Task"});

  // Its two folders hold the same files; by-name links to it.
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(at)) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"scsi0-0.img", "snapshot.json"})) << d.log();
  EXPECT_TRUE(fs::is_directory(vm_dir() + "/" + snap.moref));
  EXPECT_TRUE(fs::is_directory(mnt_ + "/sim/by-name/DC0_H0_VM0/nightly"));
  const std::string json = read_text(at + "/snapshot.json");
  EXPECT_NE(json.find("\"moref\": \"" + snap.moref + "\""), std::string::npos) << json;
  EXPECT_NE(json.find("Made by vixfs on "), std::string::npos) << json;
  // Change tracking is on (-cbt): the snapshot's disk carries the changeId of that moment.
  EXPECT_NE(json.find("\"changeTracking\": true"), std::string::npos) << json;
  ASSERT_EQ(snap.disks.size(), 1u);
  ASSERT_FALSE(snap.disks[0].change_id.empty());
  EXPECT_NE(json.find("\"changeId\": \"" + snap.disks[0].change_id + "\""), std::string::npos)
      << json;

  ASSERT_EQ(snap.disks.size(), 1u);
  const std::string raw = tmp_.file("want.raw");
  run_ok("qemu-img convert -q -O raw " + sh_quote(sim_->local_file(snap.disks[0].file_name())) +
         " " + sh_quote(raw));
  EXPECT_EQ(run("cmp " + sh_quote(raw) + " " + sh_quote(at + "/scsi0-0.img")).exit_code, 0);

  {
    const int fd = ::open((at + "/scsi0-0.img").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << strerror(errno);
    EXPECT_EQ(rmdir_errno(at), EBUSY);
    EXPECT_NE(d.log().find("rmdir refused (EBUSY): sim/" + vm_ + "/" + snap.moref +
                           "/scsi0-0.img is open"),
              std::string::npos)
        << d.log();
    ::close(fd);
  }
  EXPECT_EQ(vixfs_snapshots().size(), 1u);
  // A folder still held open after the removal: its disk, read once before, cannot open again
  // through the connection that went with the snapshot.
  const int held = ::open((vm_dir() + "/" + snap.moref).c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(held, 0) << strerror(errno);
  ASSERT_EQ(rmdir_errno(at), 0) << d.log();
  EXPECT_EQ(::openat(held, "scsi0-0.img", O_RDONLY), -1);
  EXPECT_NE(d.log().find("/scsi0-0.img: snapshot " + snap.moref + " removed"), std::string::npos)
      << d.log();
  ::close(held);
  EXPECT_EQ(vixfs_snapshots().size(), 0u) << d.log();
  EXPECT_TRUE(disabled().empty());
  EXPECT_FALSE(fs::exists(at));
  EXPECT_FALSE(fs::exists(vm_dir() + "/" + snap.moref));
  const std::string current = read_text(vm_dir() + "/current/snapshot.json");
  EXPECT_NE(current.find("\"consolidationNeeded\": false"), std::string::npos) << current;
  EXPECT_TRUE(d.stop()) << d.log();
}

// Snapshots someone else made stay unless the mount allows it; mkdir takes only @NAME in a VM
// folder, and nothing else in the tree can be made or removed.
TEST_F(FsSnapshots, OnlyWhatTheMountMayChangeChanges) {
  std::string error;
  const std::string theirs = sim_->snapshot("u", "p", vm_, "theirs", "made by a person", &error);
  ASSERT_FALSE(theirs.empty()) << error;
  {
    VixfsDaemon d(args(), mnt_, tmp_.file("log"));
    ASSERT_TRUE(d.mounted()) << d.log();
    EXPECT_EQ(rmdir_errno(vm_dir() + "/" + theirs), EPERM);
    EXPECT_NE(d.log().find("was not made by vixfs; mount with -o allow-remove-snapshots"),
              std::string::npos)
        << d.log();
    EXPECT_EQ(rmdir_errno(vm_dir() + "/current"), EPERM);
    EXPECT_EQ(mkdir_errno(vm_dir() + "/plain"), EPERM);
    EXPECT_NE(d.log().find("folders are named @NAME"), std::string::npos) << d.log();
    EXPECT_EQ(mkdir_errno(vm_dir() + "/@a%b"), EINVAL);
    EXPECT_EQ(mkdir_errno(mnt_ + "/sim/elsewhere"), EROFS);
    EXPECT_EQ(mkdir_errno(vm_dir() + "/current/x"), EROFS);
    EXPECT_EQ(::open((vm_dir() + "/current/new.img").c_str(), O_CREAT | O_WRONLY, 0644), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_EQ(::open((vm_dir() + "/current/scsi0-0.img").c_str(), O_WRONLY), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_TRUE(d.stop()) << d.log();
  }
  auto inv = client_->inventory();
  ASSERT_TRUE(inv.ok());
  ASSERT_NE(vs::find_snapshot(inv->find_vm(vm_)->snapshots, theirs), nullptr);

  VixfsDaemon d(args({"-o", "allow-remove-snapshots"}), mnt_, tmp_.file("log2"));
  ASSERT_TRUE(d.mounted()) << d.log();
  EXPECT_EQ(rmdir_errno(vm_dir() + "/" + theirs), 0) << d.log();
  inv = client_->inventory();
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(vs::find_snapshot(inv->find_vm(vm_)->snapshots, theirs), nullptr);
  EXPECT_FALSE(fs::exists(vm_dir() + "/" + theirs));
  EXPECT_TRUE(d.stop()) << d.log();
}

// A snapshot made from the tree lives as long as the mount: unmount removes it, -o quiesce asks
// for a quiesced one.
TEST_F(FsSnapshots, UnmountRemovesTheSnapshotsItMade) {
  VixfsDaemon d(args({"-o", "quiesce"}), mnt_, tmp_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  ASSERT_EQ(mkdir_errno(vm_dir() + "/@one"), 0) << d.log();
  ASSERT_EQ(mkdir_errno(vm_dir() + "/@two"), 0) << d.log();
  EXPECT_EQ(mkdir_errno(vm_dir() + "/@two"), EEXIST);
  EXPECT_EQ(vixfs_snapshots().size(), 2u);
  EXPECT_NE(read_text(vm_dir() + "/@one/snapshot.json").find("\"quiesced\": true"),
            std::string::npos);
  // The block stays while one of the VM's snapshots of this mount does.
  ASSERT_EQ(rmdir_errno(vm_dir() + "/@one"), 0) << d.log();
  EXPECT_EQ(disabled(), std::vector<std::string>{"RelocateVM_Task"});
  EXPECT_TRUE(d.stop()) << d.log();
  EXPECT_NE(d.log().find("snapshot made here removed"), std::string::npos) << d.log();
  // TearDown: none left, nothing disabled.
}

// A killed vixfs leaves its snapshot and the block; the next mount's Cleanup removes both.
TEST_F(FsSnapshots, AKilledMountsSnapshotGoesAtTheNextMount) {
  {
    VixfsDaemon d(args(), mnt_, tmp_.file("log"));
    ASSERT_TRUE(d.mounted()) << d.log();
    ASSERT_EQ(mkdir_errno(vm_dir() + "/@left"), 0) << d.log();
    d.kill9();
    d.stop();  // clears the dead mount and reaps the daemon
  }
  ASSERT_EQ(vixfs_snapshots().size(), 1u);
  EXPECT_EQ(disabled(), std::vector<std::string>{"RelocateVM_Task"});
  VixfsDaemon d(args(), mnt_, tmp_.file("log2"));
  ASSERT_TRUE(d.mounted()) << d.log();
  EXPECT_EQ(vixfs_snapshots().size(), 0u) << d.log();
  EXPECT_TRUE(disabled().empty()) << d.log();
  EXPECT_TRUE(d.stop()) << d.log();
}

// A removal that could not merge the delta disks: the log says to consolidate, and every
// snapshot.json of the VM shows consolidationNeeded until a later removal reads it again.
TEST_F(FsSnapshots, ARemovalThatLeavesDeltasShowsConsolidationNeeded) {
  const std::string control = sim_->get("VCSIM_CONTROL") + "/consolidation-fails";
  VixfsDaemon d(args(), mnt_, tmp_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  ASSERT_EQ(mkdir_errno(vm_dir() + "/@merge"), 0) << d.log();
  std::ofstream(control) << "";
  const int removed = rmdir_errno(vm_dir() + "/@merge");
  fs::remove(control);
  ASSERT_EQ(removed, 0) << d.log();
  EXPECT_NE(read_text(vm_dir() + "/current/snapshot.json").find("\"consolidationNeeded\": true"),
            std::string::npos);
  EXPECT_NE(d.log().find(": needs consolidation after the removal of "), std::string::npos)
      << d.log();
  ASSERT_TRUE(client_->consolidate_disks(vm_).ok());
  EXPECT_TRUE(d.stop()) << d.log();
}

// A guest that cannot be quiesced: -o quiesce makes a crash-consistent snapshot and says so,
// -o quiesce=require fails the mkdir with the server's words in the log.
TEST_F(FsSnapshots, QuiesceFailureFallsBackOrFailsAsAsked) {
  const std::string control = sim_->get("VCSIM_CONTROL") + "/quiesce-fails";
  std::ofstream(control) << "";
  struct Unflip {
    std::string file;
    ~Unflip() { fs::remove(file); }
  } unflip{control};
  {
    VixfsDaemon d(args({"-o", "quiesce"}), mnt_, tmp_.file("log"));
    ASSERT_TRUE(d.mounted()) << d.log();
    ASSERT_EQ(mkdir_errno(vm_dir() + "/@crash"), 0) << d.log();
    EXPECT_NE(read_text(vm_dir() + "/@crash/snapshot.json").find("\"quiesced\": false"),
              std::string::npos);
    EXPECT_NE(d.log().find("the quiesced snapshot failed"), std::string::npos) << d.log();
    EXPECT_NE(d.log().find("An error occurred while quiescing the virtual machine"),
              std::string::npos)
        << d.log();
    EXPECT_TRUE(d.stop()) << d.log();
  }
  VixfsDaemon d(args({"-o", "quiesce=require"}), mnt_, tmp_.file("log2"));
  ASSERT_TRUE(d.mounted()) << d.log();
  EXPECT_EQ(mkdir_errno(vm_dir() + "/@must"), EIO);
  EXPECT_FALSE(fs::exists(vm_dir() + "/@must"));
  EXPECT_EQ(vixfs_snapshots().size(), 0u);
  EXPECT_NE(d.log().find("@must: mkdir failed: snapshot of " + vm_), std::string::npos) << d.log();
  EXPECT_TRUE(d.stop()) << d.log();
}

}  // namespace
