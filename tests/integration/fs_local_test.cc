// vixfs --local: real mounts of qemu-img-made disks, checked against qemu-img's bytes.
// Every mount is a VixfsDaemon (support/vixfs_daemon.h), torn down (fusermount3 -u -z, then the
// daemon is reaped) even when an assertion fails.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;
using vixtest::vixfs_mounted;
using vixtest::VixfsDaemon;

namespace {

std::set<std::string> list_dir(const std::string& dir) {
  std::set<std::string> out;
  for (const std::string& line : [&] {
         std::vector<std::string> v;
         std::istringstream in(run_ok("ls -A " + sh_quote(dir)));
         std::string l;
         while (std::getline(in, l)) v.push_back(l);
         return v;
       }()) {
    out.insert(line);
  }
  return out;
}

uint64_t u64le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The fixtures, made once for the suite, and one mount over them.
struct Env {
  TempDir tmp;
  std::string disks = tmp.file("disks");
  std::string mnt = tmp.file("mnt");
  std::string known = "vixfs known file contents 0123456789\n";
  std::unique_ptr<VixfsDaemon> mount;

  Env() {
    run_ok("mkdir -p " + sh_quote(disks));
    const std::string d = sh_quote(disks) + "/";
    // monolithicSparse with patterns, including ones that straddle grains.
    run_ok("qemu-img create -q -f vmdk " + d + "sparse.vmdk 64M");
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0x5a 0 65536' -c 'write -P 0xa5 1000448 70000' "
        "-c 'write -P 0x33 33554432 1048576' -c 'write -P 0x77 67108352 512' " +
        d + "sparse.vmdk");
    // streamOptimized from a raw with data.
    run_ok("qemu-img create -q -f raw " + d + "src.raw 32M");
    run_ok("qemu-io -f raw -c 'write -P 0x42 4096 3000000' -c 'write -P 0x17 20000000 12345' " + d +
           "src.raw");
    run_ok("qemu-img convert -O vmdk -o subformat=streamOptimized " + d + "src.raw " + d +
           "stream.vmdk");
    run_ok("rm " + d + "src.raw");
    // A delta chain: base is the parent of child, so only child is shown.
    run_ok("qemu-img create -q -f vmdk " + d + "base.vmdk 16M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x01 0 8M' " + d + "base.vmdk");
    run_ok("qemu-img create -q -f vmdk -b base.vmdk -F vmdk " + d + "child.vmdk");
    run_ok("qemu-io -f vmdk -c 'write -P 0x02 1M 1M' -c 'write -P 0x03 12M 100000' " + d +
           "child.vmdk");
    // Extent files of other disks must not be shown.
    run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + d + "flat.vmdk 4M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x44 512 1M' " + d + "flat.vmdk");
    run_ok("qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse " + d + "split.vmdk 8M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x45 7M 4096' " + d + "split.vmdk");
    // 64 GiB with ~10 MiB of data.
    run_ok("qemu-img create -q -f vmdk " + d + "big.vmdk 64G");
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0x61 0 4M' -c 'write -P 0x62 20G 3M' "
        "-c 'write -P 0x63 68716331008 3M' " +
        d + "big.vmdk");
    // MBR + ext4 partition holding a known file.
    run_ok("mkdir -p " + sh_quote(tmp.file("fsroot")));
    vixtest::write_file(tmp.file("fsroot/known.txt"), known);
    run_ok("mkfs.ext4 -q -F -d " + sh_quote(tmp.file("fsroot")) + " " +
           sh_quote(tmp.file("fs.raw")) + " 30M");
    run_ok("truncate -s 32M " + sh_quote(tmp.file("part.raw")));
    run_ok("echo 'start=2048, type=83' | sfdisk -q " + sh_quote(tmp.file("part.raw")));
    run_ok("dd if=" + sh_quote(tmp.file("fs.raw")) + " of=" + sh_quote(tmp.file("part.raw")) +
           " bs=512 seek=2048 conv=notrunc,sparse status=none");
    run_ok("qemu-img convert -O vmdk " + sh_quote(tmp.file("part.raw")) + " " + d + "part.vmdk");
    mount = std::make_unique<VixfsDaemon>(std::vector<std::string>{"--local", disks}, mnt,
                                          tmp.file("vixfs.log"));
  }
  ~Env() { mount.reset(); }
};

Env* env = nullptr;

class FsLocal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { env = new Env(); }
  static void TearDownTestSuite() {
    delete env;
    env = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(env->mount->mounted()) << "vixfs did not mount; its log:\n" << env->mount->log();
  }
  std::string img(const std::string& name) { return env->mnt + "/" + name; }
};

TEST_F(FsLocal, TreeShowsDisksOnly) {
  std::set<std::string> expected = {".vixfs",   "big.img",    "child.img", "flat.img",
                                    "part.img", "sparse.img", "split.img", "stream.img"};
  EXPECT_EQ(list_dir(env->mnt), expected);
  EXPECT_EQ(list_dir(env->mnt + "/.vixfs"), (std::set<std::string>{"stats.json", "version"}));
  std::string version = run_ok("cat " + sh_quote(env->mnt + "/.vixfs/version"));
  EXPECT_EQ(version.rfind("vixfs ", 0), 0u) << version;
}

TEST_F(FsLocal, StatMatchesDisk) {
  struct stat st {};
  ASSERT_EQ(stat(img("big.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, int64_t{64} << 30);
  // ~10 MiB of data: st_blocks covers it, far below the capacity.
  EXPECT_GE(st.st_blocks, (10 << 20) / 512);
  EXPECT_LT(st.st_blocks, (64 << 20) / 512);
  struct stat vm {};
  ASSERT_EQ(stat((env->disks + "/big.vmdk").c_str(), &vm), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, vm.st_mtim.tv_sec);
  EXPECT_FALSE(st.st_mode & 0222);
}

TEST_F(FsLocal, BytesMatchQemuImg) {
  for (const char* name : {"sparse", "stream", "child", "flat", "split", "part"}) {
    SCOPED_TRACE(name);
    std::string raw = env->tmp.file(std::string(name) + ".raw");
    run_ok("qemu-img convert -O raw " + sh_quote(env->disks + "/" + name + ".vmdk") + " " +
           sh_quote(raw));
    auto r = run("cmp " + sh_quote(img(std::string(name) + ".img")) + " " + sh_quote(raw));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    unlink(raw.c_str());
  }
}

TEST_F(FsLocal, OddOffsetsAndLengths) {
  const std::string raw = env->tmp.file("odd.raw");
  run_ok("qemu-img convert -O raw " + sh_quote(env->disks + "/sparse.vmdk") + " " + sh_quote(raw));
  std::vector<uint8_t> want = vixtest::read_file(raw);
  ASSERT_EQ(want.size(), 64u << 20);
  int fd = open(img("sparse.img").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const std::vector<std::pair<uint64_t, size_t>> cases = {
      {0, 1},        {1, 1},           {511, 2},       {513, 1000},
      {65535, 3},    {1000447, 70002}, {1000449, 513}, {33554431, 1048578},
      {67108863, 1}, {67108000, 5000}, {3, 3 << 20}};
  for (auto [off, len] : cases) {
    SCOPED_TRACE("offset " + std::to_string(off) + " length " + std::to_string(len));
    std::vector<uint8_t> got(len);
    ssize_t n = pread(fd, got.data(), len, static_cast<off_t>(off));
    size_t expect_n = static_cast<size_t>(std::min<uint64_t>(len, want.size() - off));
    ASSERT_EQ(n, static_cast<ssize_t>(expect_n));
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + n, want.begin() + static_cast<long>(off)));
  }
  uint8_t b;
  EXPECT_EQ(pread(fd, &b, 1, static_cast<off_t>(want.size())), 0);
  close(fd);
}

TEST_F(FsLocal, SparseCopyOfBigDisk) {
  std::string copy = env->tmp.file("big.copy");
  auto start = std::chrono::steady_clock::now();
  run_ok("cp --sparse=always " + sh_quote(img("big.img")) + " " + sh_quote(copy));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto r = run("qemu-img compare -q -f raw -F vmdk " + sh_quote(copy) + " " +
               sh_quote(env->disks + "/big.vmdk"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  struct stat st {};
  ASSERT_EQ(stat(copy.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, int64_t{64} << 30);
  EXPECT_LT(st.st_blocks * 512, int64_t{64} << 20) << "the copy is not sparse";
  EXPECT_LT(secs, 60.0);
  RecordProperty("cp_sparse_seconds", std::to_string(secs));
  unlink(copy.c_str());
}

TEST_F(FsLocal, SeekDataHoleFollowAllocation) {
  int fd = open(img("big.img").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const off_t g20 = off_t{20} << 30;
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 0);
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 4 << 20);
  EXPECT_EQ(lseek(fd, 4 << 20, SEEK_DATA), g20);
  EXPECT_EQ(lseek(fd, g20 + 100, SEEK_DATA), g20 + 100);
  EXPECT_EQ(lseek(fd, g20, SEEK_HOLE), g20 + (3 << 20));
  EXPECT_EQ(lseek(fd, g20 + (3 << 20), SEEK_DATA), off_t{68716331008});
  // Data to the end: the next hole is the end of the file.
  EXPECT_EQ(lseek(fd, off_t{68716331008}, SEEK_HOLE), off_t{64} << 30);
  errno = 0;
  EXPECT_EQ(lseek(fd, off_t{64} << 30, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  errno = 0;
  EXPECT_EQ(lseek(fd, off_t{64} << 30, SEEK_HOLE), -1);
  EXPECT_EQ(errno, ENXIO);
  close(fd);
}

TEST_F(FsLocal, LoopMountPartition) {
  std::string dev = run_ok("losetup -P -r --show -f " + sh_quote(img("part.img")));
  dev.erase(dev.find_last_not_of("\n") + 1);
  ASSERT_FALSE(dev.empty());
  struct LoopGuard {
    std::string dev, dir;
    ~LoopGuard() {
      if (!dir.empty()) run("umount " + sh_quote(dir));
      run("losetup -d " + sh_quote(dev));
    }
  } guard{dev, ""};
  std::string part = dev + "p1";
  for (int i = 0; i < 40 && access(part.c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (access(part.c_str(), F_OK) != 0) {
    // Some kernels (containers, VMs without partition scanning) never create loopNp1: map the
    // partition by the offset the MBR read through vixfs gives instead.
    std::string table = run_ok("sfdisk -d " + sh_quote(img("part.img")));
    size_t at = table.find("start=");
    ASSERT_NE(at, std::string::npos) << table;
    uint64_t start = std::stoull(table.substr(at + 6));
    EXPECT_EQ(start, 2048u);
    run("losetup -d " + sh_quote(dev));
    dev = run_ok("losetup -r --show -f -o " + std::to_string(start * 512) + " " +
                 sh_quote(img("part.img")));
    dev.erase(dev.find_last_not_of("\n") + 1);
    guard.dev = dev;
    part = dev;
    std::cerr << "note: no partition scanning here; loop-mounted the partition by offset\n";
  }
  std::string dir = env->tmp.file("ext4");
  run_ok("mkdir -p " + sh_quote(dir));
  run_ok("mount -o ro,noload " + sh_quote(part) + " " + sh_quote(dir));
  guard.dir = dir;
  auto got = vixtest::read_file(dir + "/known.txt");
  EXPECT_EQ(std::string(got.begin(), got.end()), env->known);
}

TEST_F(FsLocal, WritesAreRefused) {
  errno = 0;
  EXPECT_EQ(open(img("sparse.img").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  errno = 0;
  EXPECT_EQ(open(img("new.img").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_NE(truncate(img("sparse.img").c_str(), 0), 0);
  EXPECT_EQ(errno, EROFS);
}

// Its own mount: unmount with fusermount3 -u ends the daemon, after closing everything.
TEST(FsLocalMount, UnmountLeavesNoProcess) {
  TempDir tmp;
  run_ok("mkdir -p " + sh_quote(tmp.file("d")));
  run_ok("qemu-img create -q -f vmdk " + sh_quote(tmp.file("d/one.vmdk")) + " 1M");
  VixfsDaemon m({"--local", tmp.file("d")}, tmp.file("mnt"), tmp.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  // A busy unmount fails at once instead of hanging; the daemon keeps serving.
  int fd = open((tmp.file("mnt") + "/one.img").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  auto busy = run("timeout 10 fusermount3 -u " + sh_quote(tmp.file("mnt")));
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_NE(busy.exit_code, 124) << "busy unmount hung";
  char c;
  EXPECT_EQ(pread(fd, &c, 1, 0), 1);
  close(fd);
  auto r = run("timeout 10 fusermount3 -u " + sh_quote(tmp.file("mnt")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(m.wait_exit(std::chrono::seconds(10))) << "vixfs still running after unmount";
  EXPECT_TRUE(WIFEXITED(m.status()) && WEXITSTATUS(m.status()) == 0) << m.status();
  std::string log = m.log();
  for (const char* step : {"closed every disk", "disconnected", "library exit"}) {
    EXPECT_NE(log.find(step), std::string::npos) << step << "\n" << log;
  }
}

TEST(FsLocalMount, SigtermUnmounts) {
  TempDir tmp;
  run_ok("mkdir -p " + sh_quote(tmp.file("d")));
  run_ok("qemu-img create -q -f vmdk " + sh_quote(tmp.file("d/one.vmdk")) + " 1M");
  VixfsDaemon m({"--local", tmp.file("d")}, tmp.file("mnt"), tmp.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  // Even with a file open, SIGTERM ends the daemon and the mount.
  int fd = open((tmp.file("mnt") + "/one.img").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(m.signal(SIGTERM));
  EXPECT_TRUE(m.wait_exit(std::chrono::seconds(10)));
  close(fd);
  EXPECT_FALSE(vixfs_mounted(tmp.file("mnt")));
  EXPECT_NE(m.log().find("library exit"), std::string::npos) << m.log();
}

// Without -f the command returns once the mount is up, and the daemon logs to --log-file.
TEST(FsLocalMount, DaemonizesAfterMount) {
  TempDir tmp;
  run_ok("mkdir -p " + sh_quote(tmp.file("d")) + " " + sh_quote(tmp.file("mnt")));
  run_ok("qemu-img create -q -f vmdk " + sh_quote(tmp.file("d/one.vmdk")) + " 1M");
  auto r = run(std::string(VIXFS_BINARY) + " --local " + sh_quote(tmp.file("d")) + " --log-file " +
               sh_quote(tmp.file("log")) + " " + sh_quote(tmp.file("mnt")));
  struct Guard {
    std::string mnt;
    ~Guard() {
      if (vixfs_mounted(mnt)) run("fusermount3 -u -z " + sh_quote(mnt));
    }
  } guard{tmp.file("mnt")};
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(vixfs_mounted(tmp.file("mnt")));  // already up when the command returned
  EXPECT_EQ(list_dir(tmp.file("mnt")), (std::set<std::string>{".vixfs", "one.img"}));
  run_ok("fusermount3 -u " + sh_quote(tmp.file("mnt")));
  std::string log;
  for (int i = 0; i < 200; ++i) {
    log = run_ok("cat " + sh_quote(tmp.file("log")));
    if (log.find("library exit") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(log.find("VixDiskLib initialized"), std::string::npos) << log;
  EXPECT_NE(log.find("library exit"), std::string::npos) << log;
}

// Startup errors: one line, non-zero exit, nothing left mounted or running.
TEST(FsLocalMount, StartupErrorsBeforeDaemonizing) {
  TempDir tmp;
  run_ok("mkdir -p " + sh_quote(tmp.file("mnt")));
  auto r = run(std::string(VIXFS_BINARY) + " --local " + sh_quote(tmp.file("missing")) +
               " --log-file " + sh_quote(tmp.file("log")) + " " + sh_quote(tmp.file("mnt")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;
  EXPECT_FALSE(vixfs_mounted(tmp.file("mnt")));
  auto bad = run(std::string(VIXFS_BINARY) + " --local " + sh_quote(tmp.file("mnt")) + " --bogus " +
                 sh_quote(tmp.file("mnt")));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  // Redo logs on a read-only mount make no sense: a usage error, before anything mounts.
  auto redo = run(std::string(VIXFS_BINARY) + " -o ro,redo --local " + sh_quote(tmp.file("mnt")) +
                  " " + sh_quote(tmp.file("mnt")));
  EXPECT_EQ(redo.exit_code, 2) << redo.output;
  EXPECT_FALSE(vixfs_mounted(tmp.file("mnt")));
}

// vixfs.fuse.threads: checked before the daemon detaches, said in the log, and one worker still
// serves concurrent readers the right bytes.
TEST(FsLocalMount, FuseThreadsSetting) {
  TempDir tmp;
  const std::string disks = tmp.file("d"), mnt = tmp.file("mnt");
  run_ok("mkdir -p " + sh_quote(disks) + " " + sh_quote(mnt));
  run_ok("qemu-img create -q -f vmdk " + sh_quote(disks + "/a.vmdk") + " 8M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x3c 0 5M' " + sh_quote(disks + "/a.vmdk"));
  vixtest::write_file(tmp.file("bad.conf"), "vixfs.fuse.threads = 0\n");
  auto bad = run(std::string(VIXFS_BINARY) + " --local " + sh_quote(disks) + " --config " +
                 sh_quote(tmp.file("bad.conf")) + " --log-file " + sh_quote(tmp.file("log")) + " " +
                 sh_quote(mnt));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("vixfs.fuse.threads = 0: expected 1..256"), std::string::npos)
      << bad.output;
  EXPECT_FALSE(vixfs_mounted(mnt));
  {
    vixtest::VixfsDaemon d({"--local", disks}, mnt, tmp.file("log-default"));
    ASSERT_TRUE(d.mounted()) << d.log();
    const unsigned cores = std::max(2u, std::thread::hardware_concurrency());
    EXPECT_NE(d.log().find("up to " + std::to_string(cores) + " FUSE worker threads"),
              std::string::npos)
        << d.log();
  }
  vixtest::write_file(tmp.file("one.conf"), "vixfs.fuse.threads = 1\n");
  vixtest::VixfsDaemon d({"--local", disks, "--config", tmp.file("one.conf")}, mnt,
                         tmp.file("log-one"));
  ASSERT_TRUE(d.mounted()) << d.log();
  EXPECT_NE(d.log().find("up to 1 FUSE worker threads"), std::string::npos) << d.log();
  const std::string want =
      run_ok("qemu-img convert -O raw " + sh_quote(disks + "/a.vmdk") + " " +
             sh_quote(tmp.file("a.raw")) + " && sha256sum < " + sh_quote(tmp.file("a.raw")));
  const std::string img = sh_quote(mnt + "/a.img");
  const std::string four = run_ok("for i in 1 2 3 4; do dd if=" + img +
                                  " iflag=direct bs=64k status=none | sha256sum & done; wait");
  EXPECT_EQ(four, want + want + want + want);
}

TEST(FsLocalMount, CorruptDiskIsEioNotACrash) {
  TempDir tmp;
  const std::string d = tmp.file("d");
  run_ok("mkdir -p " + sh_quote(d));
  run_ok("qemu-img create -q -f vmdk " + sh_quote(d + "/good.vmdk") + " 1M");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(d + "/bad.vmdk") + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x99 0 1M' " + sh_quote(d + "/bad.vmdk"));
  {
    // Grain 1 now "lives" in the descriptor area: corruption the library detects.
    int fd = open((d + "/bad.vmdk").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t h[512];
    ASSERT_EQ(pread(fd, h, 512, 0), 512);
    uint64_t gd = u64le(h + 56);
    uint8_t e[4];
    ASSERT_EQ(pread(fd, e, 4, static_cast<off_t>(gd * 512)), 4);
    uint64_t gt = e[0] | e[1] << 8 | e[2] << 16 | uint64_t{e[3]} << 24;
    ASSERT_NE(gt, 0u);
    const uint8_t two[4] = {2, 0, 0, 0};
    ASSERT_EQ(pwrite(fd, two, 4, static_cast<off_t>(gt * 512 + 4)), 4);
    close(fd);
  }
  run_ok("printf 'not a disk' > " + sh_quote(d + "/junk.vmdk"));
  VixfsDaemon m({"--local", d}, tmp.file("mnt"), tmp.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  auto names = list_dir(tmp.file("mnt"));
  EXPECT_TRUE(names.count("good.img"));
  EXPECT_FALSE(names.count("junk.img"));
  if (names.count("bad.img")) {
    int fd = open((tmp.file("mnt") + "/bad.img").c_str(), O_RDONLY);
    if (fd >= 0) {
      char buf[4096];
      errno = 0;
      EXPECT_EQ(pread(fd, buf, sizeof buf, 65536), -1);
      EXPECT_EQ(errno, EIO);
      close(fd);
    } else {
      EXPECT_EQ(errno, EIO);
    }
  }
  // Still serving.
  int fd = open((tmp.file("mnt") + "/good.img").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char c;
  EXPECT_EQ(pread(fd, &c, 1, 4096), 1);
  close(fd);
  // Either way one log line names the disk.
  EXPECT_NE(m.log().find("bad.img"), std::string::npos) << m.log();
}

}  // namespace

namespace {

// One disk's counts in stats.json; all -1 when absent.
struct DiskCounts {
  long long reads = -1, bytes = -1, mapped = -1;
};
DiskCounts disk_counts(const std::string& json, const std::string& name) {
  // No std::regex: GCC 12 with ASan warns inside <regex>, and -Werror stops the build.
  const std::string head = "\"" + name + "\": {\"transport\": \"file\", \"reads\": ";
  const size_t at = json.find(head);
  if (at == std::string::npos) return {};
  DiskCounts c;
  int io = 0;
  if (std::sscanf(json.c_str() + at + head.size(),
                  "%lld, \"bytes\": %lld, \"errors\": 0, \"mappedBytes\": %lld, "
                  "\"transportIo\": {\"readRequests\": %d",
                  &c.reads, &c.bytes, &c.mapped, &io) != 4 ||
      io < 1) {
    return {};
  }
  return c;
}

TEST_F(FsLocal, StatsJsonCountsReadsAndSigusr1LogsThem) {
  const std::string stats = env->mnt + "/.vixfs/stats.json";
  // Opening the disk first makes it appear with its transport.
  const int fd = open(img("flat.img").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::vector<char> buf(1 << 20);
  ASSERT_EQ(pread(fd, buf.data(), 4096, 0), 4096);
  const std::string before_json = run_ok("cat " + sh_quote(stats));
  const auto before = disk_counts(before_json, "flat.img");
  ASSERT_GE(before.reads, 1) << before_json;
  // Other tests read this disk: its pages go, so this read reaches the daemon.
  ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ASSERT_EQ(pread(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
  close(fd);
  const std::string after_json = run_ok("cat " + sh_quote(stats));
  const auto after = disk_counts(after_json, "flat.img");
  EXPECT_GT(after.reads, before.reads) << after_json;
  EXPECT_GE(after.bytes - before.bytes, 1 << 20) << after_json;
  EXPECT_NE(after_json.find("\"mount\": {\"reads\": "), std::string::npos) << after_json;
  // vixfs turns the read-ahead cache on, but not in front of local files (the page cache is).
  EXPECT_NE(after_json.find("\"cache\": null"), std::string::npos) << after_json;
  EXPECT_NE(after_json.find("\"transports\": {\"file\": {\"readRequests\": "), std::string::npos)
      << after_json;

  ASSERT_TRUE(env->mount->signal(SIGUSR1));
  bool logged = false;
  for (int i = 0; i < 100 && !logged; ++i) {
    logged = env->mount->log().find("stats (SIGUSR1)") != std::string::npos;
    if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(logged) << env->mount->log();
  EXPECT_TRUE(env->mount->mounted());
}

}  // namespace

namespace {

// vixfs.cache.fileTransport = 1: the cache in front of local files too, counted in stats.json.
TEST_F(FsLocal, CacheInFrontOfLocalFilesWhenAsked) {
  TempDir dir;
  const std::string mnt = dir.file("mnt");
  vixtest::write_file(dir.file("conf"), "vixfs.cache.fileTransport = 1\n");
  vixtest::VixfsDaemon d({"--local", env->disks, "--config", dir.file("conf")}, mnt,
                         dir.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string raw = dir.file("sparse.raw");
  run_ok("qemu-img convert -O raw " + sh_quote(env->disks + "/sparse.vmdk") + " " + sh_quote(raw));
  EXPECT_EQ(
      run_ok("dd if=" + sh_quote(mnt + "/sparse.img") + " bs=1M count=8 status=none | sha256sum"),
      run_ok("head -c 8M " + sh_quote(raw) + " | sha256sum"));
  const std::string json = run_ok("cat " + sh_quote(mnt + "/.vixfs/stats.json"));
  EXPECT_NE(json.find("\"cache\": {\"chunkBytes\": 1048576, \"reads\": "), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"cacheMemory\": {\"usedBytes\": "), std::string::npos) << json;
  // Large reads are answered from the cache's chunks, written to the kernel from where they are.
  const DiskCounts c = disk_counts(json, "sparse.img");
  EXPECT_GE(c.bytes, 8 << 20) << json;
  EXPECT_EQ(c.mapped, c.bytes) << json;
  EXPECT_TRUE(d.stop(std::chrono::seconds(10))) << d.log();
}

// --no-cache: no read-ahead cache in front of the disks; stats.json says so.
TEST_F(FsLocal, NoCacheLeavesEveryReadToTheTransport) {
  TempDir dir;
  const std::string mnt = dir.file("mnt");
  vixtest::VixfsDaemon d({"--local", env->disks, "--no-cache"}, mnt, dir.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const int fd = open((mnt + "/flat.img").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[4096];
  ASSERT_EQ(pread(fd, buf, sizeof buf, 0), 4096);
  const std::string json = run_ok("cat " + sh_quote(mnt + "/.vixfs/stats.json"));
  close(fd);
  EXPECT_NE(json.find("\"flat.img\": {\"transport\": \"file\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"cache\": null"), std::string::npos) << json;
  EXPECT_EQ(json.find("\"cache\": {"), std::string::npos) << json;
  EXPECT_NE(json.find("\"cacheMemory\": null"), std::string::npos) << json;
  EXPECT_TRUE(d.stop(std::chrono::seconds(10))) << d.log();
}

}  // namespace

namespace {

std::string bdi_read_ahead_kb(const std::string& mnt) {
  struct stat st {};
  if (stat(mnt.c_str(), &st) != 0) return "stat failed";
  return vixtest::read_text("/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                            std::to_string(minor(st.st_dev)) + "/read_ahead_kb");
}

// Disks whose bytes lie plainly in the VMDK files (grains, flat extents, a parent's grains) are
// replied by splicing from those files; compressed grains are inflated and copied. Both give
// qemu-img's bytes.
TEST_F(FsLocal, ReadsSpliceFromTheVmdkFiles) {
  TempDir dir;
  const std::string mnt = dir.file("mnt");
  vixtest::VixfsDaemon d({"--local", env->disks}, mnt, dir.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  for (const std::string name : {"sparse", "child", "flat", "split", "stream"}) {
    const std::string file = mnt + "/" + name + ".img";
    const std::string raw = dir.file(name + ".raw");
    run_ok("qemu-img convert -O raw " + sh_quote(env->disks + "/" + name + ".vmdk") + " " +
           sh_quote(raw));
    EXPECT_EQ(run_ok("sha256sum < " + sh_quote(file)), run_ok("sha256sum < " + sh_quote(raw)))
        << name;
    const std::string json = run_ok("cat " + sh_quote(mnt + "/.vixfs/stats.json"));
    const DiskCounts c = disk_counts(json, name + ".img");
    ASSERT_GT(c.bytes, 0) << name << ": " << json;
    if (name == "stream") {  // only the requests that fall wholly in holes
      EXPECT_LT(c.mapped, c.bytes - 2'000'000) << json;
    } else {
      // The kernel may slip in a few reads under 64 KiB (re-reading a page it dropped); those
      // are copied by design. Everything else must have gone out by splice.
      EXPECT_LE(c.bytes - c.mapped, 1 << 20) << name << ": " << json;
      EXPECT_GT(c.mapped, 0) << name << ": " << json;
    }
  }
  EXPECT_TRUE(d.stop(std::chrono::seconds(10))) << d.log();
}

// FUSE starts a mount at the kernel's default read-ahead (128 KiB); vixfs raises it when a disk
// opens (vixfs.fuse.readAheadKB), so a sequential copy reaches the daemon in 960 KiB requests.
TEST_F(FsLocal, KernelReadAheadIsRaisedForDiskFiles) {
  TempDir dir;
  const std::string mnt = dir.file("mnt");
  vixtest::VixfsDaemon d({"--local", env->disks}, mnt, dir.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  run_ok("dd if=" + sh_quote(mnt + "/sparse.img") + " of=/dev/null bs=1M 2>&1");
  EXPECT_EQ(bdi_read_ahead_kb(mnt), "4096\n") << d.log();
  const auto counts =
      disk_counts(run_ok("cat " + sh_quote(mnt + "/.vixfs/stats.json")), "sparse.img");
  ASSERT_EQ(counts.bytes, 64 << 20);
  EXPECT_LE(counts.reads, 160) << "64 MiB in " << counts.reads << " reads";
  EXPECT_TRUE(d.stop(std::chrono::seconds(10))) << d.log();

  // 0 leaves the kernel's setting alone.
  vixtest::write_file(dir.file("conf"), "vixfs.fuse.readAheadKB = 0\n");
  vixtest::VixfsDaemon keep({"--local", env->disks, "--config", dir.file("conf")}, mnt,
                            dir.file("log2"));
  ASSERT_TRUE(keep.mounted()) << keep.log();
  run_ok("dd if=" + sh_quote(mnt + "/sparse.img") + " of=/dev/null bs=1M count=1 2>&1");
  EXPECT_NE(bdi_read_ahead_kb(mnt), "4096\n");
}

}  // namespace
