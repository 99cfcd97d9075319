// Redo logs on -o rw mounts: writes to a disk that must not change (a snapshot's, or any disk of
// a --local mount given -o redo) land in a local sparse log; the source's bytes never change
// (sha256 before and after), the log goes at unmount unless -o keep-redo=DIR keeps it, and a
// kept log is a VMDK child qemu-img reads as the written disk. The ext4 cases are the reason
// redo exists: a file system whose journal needs replaying cannot be mounted from a read-only
// disk at all.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "integration/fs_write_support.h"
#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "transports/loop_device.h"

using vixtest::first_difference;
using vixtest::LoopDevice;
using vixtest::pread_all;
using vixtest::pwrite_all;
using vixtest::run;
using vixtest::run_ok;
using vixtest::RwMount;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

std::string sha256(const std::string& file) {
  return run_ok("sha256sum < " + sh_quote(file));
}

// Folders named vixfs-redo-* under dir (the mount's own redo folder while it runs).
std::vector<std::string> redo_folders(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind("vixfs-redo-", 0) == 0) out.push_back(e.path());
  }
  return out;
}

// A 64 MiB ext4 image holding hello.txt whose superblock says the journal must be replayed:
// the state of a disk snapshotted while its VM ran. Made as raw, then converted to `vmdk`.
void make_ext4_needing_recovery(const TempDir& dir, const std::string& vmdk) {
  const std::string raw = dir.file("ext4.raw");
  run_ok("truncate -s 64M " + sh_quote(raw));
  run_ok("mkfs.ext4 -q -F " + sh_quote(raw));
  vixtest::write_file(dir.file("hello.txt"), std::string("hello from the snapshot\n"));
  run_ok("cd " + sh_quote(dir.path()) + " && debugfs -w -R 'write hello.txt hello.txt' " +
         sh_quote(raw) + " 2>&1");
  run_ok("debugfs -w -R 'feature needs_recovery' " + sh_quote(raw) + " 2>&1");
  run_ok("qemu-img convert -f raw -O vmdk " + sh_quote(raw) + " " + sh_quote(vmdk));
}

// Mounts the ext4 file system on `image` through a read-write loop device (journal replay),
// checks hello.txt, writes written.txt, unmounts, mounts again read-only and reads it back.
void replay_and_write(const std::string& image, const std::string& fs_dir) {
  run_ok("mkdir -p " + sh_quote(fs_dir));
  LoopDevice loop = LoopDevice::attach(image);
  ASSERT_TRUE(loop) << loop.error();
  auto m = run("mount -t ext4 " + sh_quote(loop.path()) + " " + sh_quote(fs_dir) + " 2>&1");
  ASSERT_EQ(m.exit_code, 0) << m.output << run("dmesg | tail -5").output;
  EXPECT_EQ(vixtest::read_text(fs_dir + "/hello.txt"), "hello from the snapshot\n");
  vixtest::write_file(fs_dir + "/written.txt", std::string("written through the redo log\n"));
  run_ok("umount " + sh_quote(fs_dir));
  auto again =
      run("mount -t ext4 -o ro " + sh_quote(loop.path()) + " " + sh_quote(fs_dir) + " 2>&1");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(vixtest::read_text(fs_dir + "/written.txt"), "written through the redo log\n");
  run_ok("umount " + sh_quote(fs_dir));
}

class FsRedoLocal : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ok("mkdir -p " + sh_quote(disks_) + " " + sh_quote(tmp_));
    run_ok("qemu-img create -q -f vmdk " + sh_quote(vmdk_) + " 16M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 9000000 70000' " +
           sh_quote(vmdk_));
    model_ = vixtest::qemu_raw(vmdk_);
    vixtest::write_file(conf_, "tmpDirectory = \"" + tmp_ + "\"\n");
  }
  std::vector<std::string> args(const std::string& opts) {
    return {"--local", disks_, "--config", conf_, "-o", opts};
  }
  // 40 random unaligned writes through the mount, mirrored into model_.
  void scribble(int fd, unsigned seed) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 40; ++i) {
      const size_t len = 1 + rng() % 150000;
      const uint64_t off = rng() % (model_.size() - len);
      std::vector<uint8_t> data(len);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(pwrite_all(fd, data.data(), len, off)) << strerror(errno);
      std::memcpy(model_.data() + off, data.data(), len);
    }
  }

  TempDir dir_;
  std::string disks_ = dir_.file("disks"), vmdk_ = disks_ + "/disk.vmdk";
  std::string tmp_ = dir_.file("tmp"), conf_ = dir_.file("vixfs.conf");
  std::string mnt_ = dir_.file("mnt"), log_ = dir_.file("log");
  std::string img_ = mnt_ + "/disk.img";
  std::vector<uint8_t> model_;
};

TEST_F(FsRedoLocal, WritesLandInALogThatUnmountDrops) {
  const std::string before = sha256(vmdk_);
  {
    RwMount m(args("rw,redo"), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    scribble(fd, 7);
    EXPECT_EQ(fsync(fd), 0) << strerror(errno);
    EXPECT_EQ(first_difference(pread_all(fd, model_.size()), model_), -1) << "same handle";
    close(fd);
    // Another handle, after the last one closed: the log outlives handles, not the mount.
    const int again = open(img_.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(again, 0);
    EXPECT_EQ(first_difference(pread_all(again, model_.size()), model_), -1) << "new handle";
    close(again);
    ASSERT_EQ(redo_folders(tmp_).size(), 1u) << m.log();
    const std::string log_file = redo_folders(tmp_)[0] + "/disk.redo.vmdk";
    EXPECT_TRUE(std::filesystem::exists(log_file));
    EXPECT_EQ(sha256(vmdk_), before) << "the source changed while mounted";
    EXPECT_TRUE(m.stop()) << m.log();
    EXPECT_NE(m.log().find("disk.img: redo log " + log_file + " dropped"), std::string::npos)
        << m.log();
  }
  EXPECT_TRUE(redo_folders(tmp_).empty()) << "the redo folder outlived the mount";
  EXPECT_EQ(sha256(vmdk_), before);
  // A new mount starts from the source again.
  RwMount m(args("rw,redo"), mnt_, log_);
  ASSERT_TRUE(m.mounted()) << m.log();
  const int fd = open(img_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(first_difference(pread_all(fd, model_.size()), vixtest::qemu_raw(vmdk_)), -1);
  close(fd);
}

TEST_F(FsRedoLocal, ReadingMakesNoLog) {
  RwMount m(args("rw,redo"), mnt_, log_);
  ASSERT_TRUE(m.mounted()) << m.log();
  const int fd = open(img_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(first_difference(pread_all(fd, model_.size()), model_), -1);
  close(fd);
  ASSERT_EQ(redo_folders(tmp_).size(), 1u);
  EXPECT_TRUE(std::filesystem::is_empty(redo_folders(tmp_)[0])) << m.log();
}

TEST_F(FsRedoLocal, KeptLogIsAChildQemuReadsAndTheNextMountReuses) {
  const std::string keep = dir_.file("keep");
  run_ok("mkdir -p " + sh_quote(keep));
  const std::string before = sha256(vmdk_);
  {
    RwMount m(args("rw,keep-redo=" + keep), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    scribble(fd, 11);
    close(fd);
    EXPECT_TRUE(m.stop()) << m.log();
    EXPECT_NE(m.log().find("redo log kept at " + keep + "/disk.redo.vmdk"), std::string::npos)
        << m.log();
  }
  EXPECT_EQ(sha256(vmdk_), before);
  const std::string kept = keep + "/disk.redo.vmdk";
  const std::string chain = run_ok("qemu-img info --backing-chain " + sh_quote(kept));
  EXPECT_NE(chain.find("backing file: " + vmdk_), std::string::npos) << chain;
  EXPECT_EQ(first_difference(vixtest::qemu_raw(kept), model_), -1) << "qemu-img reads the chain";
  vixtest::expect_check_clean(kept);
  // Mounting with the same folder carries on where the last mount stopped.
  RwMount m(args("rw,keep-redo=" + keep), mnt_, log_);
  ASSERT_TRUE(m.mounted()) << m.log();
  const int fd = open(img_.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(first_difference(pread_all(fd, model_.size()), model_), -1) << m.log();
  scribble(fd, 12);
  close(fd);
  EXPECT_TRUE(m.stop()) << m.log();
  EXPECT_NE(m.log().find("reusing redo log " + kept), std::string::npos) << m.log();
  EXPECT_EQ(first_difference(vixtest::qemu_raw(kept), model_), -1);
  EXPECT_EQ(sha256(vmdk_), before);
}

// Without -o redo a --local rw mount writes its disks in place, as before.
TEST_F(FsRedoLocal, LocalRwWithoutRedoWritesInPlace) {
  const std::string before = sha256(vmdk_);
  RwMount m(args("rw"), mnt_, log_);
  ASSERT_TRUE(m.mounted()) << m.log();
  const int fd = open(img_.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  scribble(fd, 5);
  close(fd);
  EXPECT_TRUE(m.stop()) << m.log();
  EXPECT_NE(sha256(vmdk_), before);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(vmdk_), model_), -1);
  EXPECT_TRUE(redo_folders(tmp_).empty());
}

TEST_F(FsRedoLocal, Ext4JournalReplaysOnTheLogNotTheDisk) {
  std::filesystem::remove(vmdk_);
  make_ext4_needing_recovery(dir_, vmdk_);
  const std::string before = sha256(vmdk_);
  {
    // Read-only, the kernel refuses: recovery needs write access.
    RwMount ro({"--local", disks_, "--config", conf_}, mnt_, log_);
    ASSERT_TRUE(ro.mounted()) << ro.log();
    LoopDevice loop = LoopDevice::attach(img_, true);
    ASSERT_TRUE(loop) << loop.error();
    run_ok("mkdir -p " + sh_quote(dir_.file("fs")));
    auto m = run("mount -t ext4 -o ro " + sh_quote(loop.path()) + " " + sh_quote(dir_.file("fs")) +
                 " 2>&1");
    EXPECT_NE(m.exit_code, 0) << "a read-only disk whose journal needs replay mounted";
    if (m.exit_code == 0) run("umount " + sh_quote(dir_.file("fs")));
  }
  {
    RwMount m(args("rw,redo"), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    replay_and_write(img_, dir_.file("fs"));
    EXPECT_TRUE(m.stop()) << m.log();
  }
  EXPECT_EQ(sha256(vmdk_), before) << "journal replay reached the source";
}

TEST(FsRedoOptions, ContradictionsAreUsageErrors) {
  TempDir tmp;
  run_ok("mkdir -p " + sh_quote(tmp.file("d")) + " " + sh_quote(tmp.file("mnt")));
  auto vixfs = [&](const std::string& opts) {
    return run(std::string(VIXFS_BINARY) + " -f --local " + sh_quote(tmp.file("d")) + " -o " +
               opts + " " + sh_quote(tmp.file("mnt")) + " 2>&1");
  };
  auto no_rw = vixfs("redo");
  EXPECT_EQ(no_rw.exit_code, 2) << no_rw.output;
  EXPECT_NE(no_rw.output.find("need -o rw"), std::string::npos) << no_rw.output;
  auto missing = vixfs("rw,keep-redo=" + tmp.file("nowhere"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("nowhere"), std::string::npos) << missing.output;
  auto both = vixfs("rw,noredo,keep-redo=" + tmp.file("d"));
  EXPECT_EQ(both.exit_code, 2) << both.output;
  auto empty = vixfs("rw,keep-redo=");
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
  EXPECT_FALSE(vixtest::vixfs_mounted(tmp.file("mnt")));
}

// A server's snapshot disk on -o rw: redo is the default. Over https the log is the remote
// kind (its parent named by datastore path, reads falling through to HTTP ranges); over file
// the datastore's VMDK is still never written.
class FsRedoServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    vm_ = sim_->get("VCSIM_VM_DC0_H0_VM1");
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM1";
    std::filesystem::create_directories(dir);
    disk_ = dir + "/disk1.vmdk";
    std::filesystem::remove(disk_);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    fixture_dir_ = new TempDir;
    make_ext4_needing_recovery(*fixture_dir_, disk_);
    snapshot_ = sim_->snapshot("u", "p", vm_, "crash-consistent", "", &error_);
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete fixture_dir_;
    fixture_dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_FALSE(snapshot_.empty()) << error_;
    vixtest::write_file(dir_.file("pw"), std::string("p\n"));
    run_ok("mkdir -p " + sh_quote(tmp_));
    vixtest::write_file(conf_, "tmpDirectory = \"" + tmp_ + "\"\n");
  }
  std::vector<std::string> args(const std::string& transports, const std::string& opts) {
    return {"--server",
            sim_->get("VCSIM_URL"),
            "--user",
            "u",
            "--password-file",
            dir_.file("pw"),
            "--thumbprint",
            sim_->get("VCSIM_SHA1"),
            "--name",
            "sim",
            "--transports",
            transports,
            "--config",
            conf_,
            "-o",
            opts};
  }
  std::string img() { return dir_.file("mnt") + "/sim/" + vm_ + "/" + snapshot_ + "/scsi0-0.img"; }

  static Simulator* sim_;
  static TempDir* fixture_dir_;
  static std::string error_, disk_, vm_, snapshot_;
  TempDir dir_;
  std::string tmp_ = dir_.file("tmp"), conf_ = dir_.file("vixfs.conf");
};
Simulator* FsRedoServer::sim_ = nullptr;
TempDir* FsRedoServer::fixture_dir_ = nullptr;
std::string FsRedoServer::error_, FsRedoServer::disk_, FsRedoServer::vm_, FsRedoServer::snapshot_;

TEST_F(FsRedoServer, SnapshotExt4ReplaysOverHttpsIntoALocalLog) {
  const std::string before = sha256(disk_);
  {
    RwMount m(args("https", "rw"), dir_.file("mnt"), dir_.file("log"));
    ASSERT_TRUE(m.mounted()) << m.log();
    replay_and_write(img(), dir_.file("fs"));
    const auto folders = redo_folders(tmp_);
    ASSERT_EQ(folders.size(), 1u);
    const std::string log_file =
        folders[0] + "/sim/" + vm_ + "/" + snapshot_ + "/scsi0-0.redo.vmdk";
    EXPECT_TRUE(std::filesystem::exists(log_file)) << m.log();
    // The log is a VMDK naming the snapshot's disk by its datastore path.
    auto info = run_ok("qemu-img info " + sh_quote(log_file) + " 2>&1 || true");
    EXPECT_NE(info.find("[LocalDS_0] DC0_H0_VM1/disk1.vmdk"), std::string::npos) << info;
    EXPECT_NE(m.log().find("writing to redo log " + log_file), std::string::npos) << m.log();
    EXPECT_TRUE(m.stop()) << m.log();
  }
  EXPECT_TRUE(redo_folders(tmp_).empty());
  EXPECT_EQ(sha256(disk_), before) << "the snapshot's disk changed";
}

TEST_F(FsRedoServer, SnapshotThroughFileIsNeverWrittenEither) {
  const std::string before = sha256(disk_);
  RwMount m(args("file", "rw"), dir_.file("mnt"), dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  replay_and_write(img(), dir_.file("fs"));
  EXPECT_TRUE(m.stop()) << m.log();
  EXPECT_EQ(sha256(disk_), before);
}

TEST_F(FsRedoServer, NoredoKeepsSnapshotsReadOnly) {
  RwMount m(args("file", "rw,noredo"), dir_.file("mnt"), dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  errno = 0;
  EXPECT_EQ(open(img().c_str(), O_RDWR | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_NE(m.log().find("snapshot disks are never written (the mount has -o noredo)"),
            std::string::npos)
      << m.log();
  EXPECT_TRUE(redo_folders(tmp_).empty());
}

}  // namespace
