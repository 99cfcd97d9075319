// vixfs --local -o rw: writes through real mounts, checked against a model buffer and against
// qemu-img (the oracle for a VMDK's bytes): random unaligned writes, concurrent writers sharing
// sectors, a kill -9 after an fsync point, the refusals (truncate, fallocate, past the end,
// read-only disks), and the nbd transport against qemu-nbd (writes, FLUSH, punching holes).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "integration/fs_write_support.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "support/sesparse_writer.h"

using vixtest::expect_check_clean;
using vixtest::first_difference;
using vixtest::pread_all;
using vixtest::pwrite_all;
using vixtest::read_text;
using vixtest::run;
using vixtest::run_ok;
using vixtest::RwMount;
using vixtest::sh_quote;
using vixtest::TempDir;

namespace {

constexpr uint64_t kDiskBytes = 32 << 20;

class FsWriteLocal : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ok("mkdir -p " + sh_quote(disks_));
    // Data, holes, and data that straddles 64 KiB grains.
    run_ok("qemu-img create -q -f vmdk " + sh_quote(vmdk_) + " 32M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 65536' -c 'write -P 0xa5 1000448 70000' " +
           sh_quote(vmdk_));
    model_ = vixtest::qemu_raw(vmdk_);
    ASSERT_EQ(model_.size(), kDiskBytes);
  }
  std::vector<std::string> args(bool rw = true) {
    std::vector<std::string> a = {"--local", disks_};
    if (rw) a.insert(a.end(), {"-o", "rw"});
    return a;
  }
  std::string img() const { return mnt_ + "/disk.img"; }
  // qemu-nbd serving the VMDK (with `flags` added; its output in qemu-nbd.log), and the rw mount
  // arguments that reach it through the nbd transport.
  std::unique_ptr<vixtest::PortServer> serve_over_nbd(const std::string& flags,
                                                      std::vector<std::string>* mount_args) {
    const int port = vixtest::free_port();
    auto server = std::make_unique<vixtest::PortServer>(
        "qemu-nbd -f vmdk -x disk -b 127.0.0.1 -p " + std::to_string(port) +
            " --shared=4 --persistent " + flags + " " + sh_quote(vmdk_),
        port, dir_.file("qemu-nbd.log"));
    vixtest::write_file(dir_.file("vixfs.conf"),
                        "vixfs.nbd.server = \"127.0.0.1:" + std::to_string(port) +
                            "\"\nvixfs.nbd.export = \"disk\"\n");
    *mount_args = args();
    mount_args->insert(mount_args->end(),
                       {"--transports", "nbd", "--config", dir_.file("vixfs.conf")});
    return server;
  }

  TempDir dir_;
  std::string disks_ = dir_.file("disks"), vmdk_ = disks_ + "/disk.vmdk";
  std::string mnt_ = dir_.file("mnt"), log_ = dir_.file("log");
  std::vector<uint8_t> model_;
};

TEST_F(FsWriteLocal, RandomUnalignedWritesReadBackEverywhere) {
  std::vector<uint8_t> first_model;
  {
    RwMount m(args(), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    struct stat st {};
    ASSERT_EQ(stat(img().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
    // A reader opened first, its page cache and the read-ahead cache filled before the writes.
    const int reader = open(img().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(reader, 0) << strerror(errno) << m.log();
    ASSERT_EQ(pread_all(reader, kDiskBytes), model_);
    const int fd = open(img().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    std::mt19937_64 rng(7);
    uint64_t written = 0;
    for (int i = 0; i < 300; ++i) {
      // Mostly small and unaligned, some large; a few near the end of the disk.
      const size_t len = i % 10 == 0 ? 1 + rng() % 300000 : 1 + rng() % 5000;
      uint64_t off = i % 25 == 0 ? kDiskBytes - len - rng() % 1000 : rng() % (kDiskBytes - len);
      std::vector<uint8_t> data(len);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(pwrite_all(fd, data.data(), len, off)) << strerror(errno) << m.log();
      std::memcpy(model_.data() + off, data.data(), len);
      written += len;
      if (i % 37 == 0) {  // same handle, right away, with a margin on either side
        const uint64_t from = off > 700 ? off - 700 : 0;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(len + 1400, kDiskBytes - from));
        std::vector<uint8_t> back(n);
        ASSERT_EQ(pread(fd, back.data(), n, static_cast<off_t>(from)), static_cast<ssize_t>(n));
        ASSERT_EQ(0, std::memcmp(back.data(), model_.data() + from, n)) << "at " << from;
      }
    }
    // A hole now holding data is not reported as a hole.
    const off_t hole_at = 20 << 20;
    const uint8_t marker[3] = {1, 2, 3};
    ASSERT_TRUE(pwrite_all(fd, marker, 3, hole_at + 1001));
    std::memcpy(model_.data() + hole_at + 1001, marker, 3);
    const off_t data = lseek(fd, hole_at, SEEK_DATA);
    EXPECT_LE(data, hole_at + 1001);
    EXPECT_GT(lseek(fd, hole_at + 1001, SEEK_HOLE), hole_at + 1003);
    EXPECT_EQ(fsync(fd), 0) << strerror(errno);
    EXPECT_EQ(fdatasync(fd), 0) << strerror(errno);
    EXPECT_EQ(first_difference(pread_all(fd, kDiskBytes), model_), -1) << "same handle";
    EXPECT_EQ(first_difference(pread_all(reader, kDiskBytes), model_), -1) << "earlier reader";
    const int other = open(img().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(other, 0);
    EXPECT_EQ(first_difference(pread_all(other, kDiskBytes), model_), -1) << "new handle";
    close(other);
    close(reader);
    close(fd);
    const std::string stats = read_text(mnt_ + "/.vixfs/stats.json");
    EXPECT_NE(stats.find("\"bytesWritten\": " + std::to_string(written + 3)), std::string::npos)
        << stats;
    EXPECT_TRUE(m.stop()) << m.log();
  }
  expect_check_clean(vmdk_);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(vmdk_), model_), -1) << "qemu-img after unmount";
  // qemu-io reads one written range back too (its own VMDK reader, not a convert).
  auto r = run("qemu-io -f vmdk -r -c 'read -P 0x02 " + std::to_string((20 << 20) + 1002) + " 1' " +
               sh_quote(vmdk_));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("Pattern verification failed"), std::string::npos) << r.output;
  {
    RwMount m(args(false), mnt_, log_);  // remounted read-only
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(first_difference(pread_all(fd, kDiskBytes), model_), -1) << "after remount";
    close(fd);
  }
}

TEST_F(FsWriteLocal, ConcurrentWritersSharingSectorsLoseNothing) {
  {
    RwMount m(args(), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    // Writer t owns bytes [k*4L + t*L, +L) for L = 300: every 512-byte sector is shared by
    // two or three writers, who read-modify-write it at the same time.
    constexpr size_t kL = 300, kThreads = 4, kRounds = 6;
    constexpr uint64_t kBase = (5 << 20) - 3000,
                       kSpan = 600 << 10;  // inside a hole and across grains
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (size_t t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        const int fd = open(img().c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return (void)++failures;
        for (size_t round = 0; round < kRounds; ++round) {
          std::vector<uint8_t> data(kL, static_cast<uint8_t>(0x10 * (t + 1) + round));
          for (uint64_t off = kBase + t * kL; off + kL <= kBase + kSpan; off += kThreads * kL) {
            if (!pwrite_all(fd, data.data(), kL, off)) ++failures;
          }
        }
        close(fd);
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(failures.load(), 0) << m.log();
    for (size_t t = 0; t < kThreads; ++t) {
      for (uint64_t off = kBase + t * kL; off + kL <= kBase + kSpan; off += kThreads * kL) {
        std::memset(model_.data() + off, static_cast<int>(0x10 * (t + 1) + kRounds - 1), kL);
      }
    }
    const int fd = open(img().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(first_difference(pread_all(fd, kDiskBytes), model_), -1) << "through the mount";
    close(fd);
    EXPECT_TRUE(m.stop()) << m.log();
  }
  expect_check_clean(vmdk_);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(vmdk_), model_), -1) << "qemu-img";
}

TEST_F(FsWriteLocal, KillNineAfterFsyncKeepsEverythingBeforeIt) {
  constexpr uint64_t kHalf = kDiskBytes / 2;
  {
    RwMount m(args(), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    std::mt19937_64 rng(11);
    for (int i = 0; i < 200; ++i) {  // the lower half, then the fsync point
      const size_t len = 1 + rng() % 20000;
      const uint64_t off = rng() % (kHalf - len);
      std::vector<uint8_t> data(len);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(pwrite_all(fd, data.data(), len, off)) << strerror(errno);
      std::memcpy(model_.data() + off, data.data(), len);
    }
    ASSERT_EQ(fsync(fd), 0) << strerror(errno) << m.log();
    // Then a stream into the upper half, killed in the middle.
    std::atomic<int> after{0};
    std::atomic<bool> writing{true};
    std::thread writer([&] {
      std::vector<uint8_t> data(70000, 0xee);
      for (uint64_t off = kHalf + 333; off + data.size() < kDiskBytes; off += data.size()) {
        if (!pwrite_all(fd, data.data(), data.size(), off)) break;
        ++after;
      }
      writing = false;
    });
    while (after.load() < 20 && writing.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    m.kill9();
    writer.join();
    close(fd);
    EXPECT_GE(after.load(), 20) << "the stream stopped before the kill";
    EXPECT_LT(after.load(), 230);  // killed before the stream ended
    m.stop();                      // fusermount3 -u -z of the dead mount
  }
  expect_check_clean(vmdk_);
  auto raw = vixtest::qemu_raw(vmdk_);
  ASSERT_EQ(raw.size(), kDiskBytes);
  raw.resize(kHalf);
  model_.resize(kHalf);
  EXPECT_EQ(first_difference(raw, model_), -1) << "bytes before the fsync";
  RwMount again(args(), mnt_, log_);
  ASSERT_TRUE(again.mounted()) << again.log();
  const int fd = open(img().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto through = pread_all(fd, kDiskBytes);
  close(fd);
  through.resize(kHalf);
  EXPECT_EQ(first_difference(through, model_), -1) << "through a new mount";
}

TEST_F(FsWriteLocal, SizeIsFixedAndRefusalsAreErrnos) {
  // A streamOptimized disk next to it cannot be written (compressed grains).
  run_ok("qemu-img convert -q -O vmdk -o subformat=streamOptimized " + sh_quote(vmdk_) + " " +
         sh_quote(disks_ + "/stream.vmdk"));
  // Nor can an SEsparse delta (read-only in the engine): its file says so before any write.
  vixtest::SeSparseSpec delta;
  delta.capacity_sectors = kDiskBytes / 512;
  delta.writes.push_back({0, vixtest::SeSparseWrite::Kind::kData, std::vector<uint8_t>(4096, 7)});
  ASSERT_EQ(vixtest::write_sesparse(disks_, "delta", delta), "");
  {
    RwMount m(args(), mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    errno = 0;
    EXPECT_EQ(ftruncate(fd, 1 << 20), -1);
    EXPECT_EQ(errno, EPERM);
    EXPECT_EQ(ftruncate(fd, kDiskBytes), 0) << "same size: " << strerror(errno);
    errno = 0;
    EXPECT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
    errno = 0;
    EXPECT_EQ(fallocate(fd, 0, 0, 65536), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
    const char abc[4] = {'a', 'b', 'c', 'd'};
    errno = 0;
    EXPECT_EQ(pwrite(fd, abc, 4, kDiskBytes), -1);
    EXPECT_EQ(errno, EFBIG);
    EXPECT_EQ(pwrite(fd, abc, 4, kDiskBytes - 2), 2) << "cut short at the end";
    struct stat st {};
    ASSERT_EQ(fstat(fd, &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), kDiskBytes);
    close(fd);
    errno = 0;
    EXPECT_EQ(open(img().c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC), -1);
    EXPECT_EQ(errno, EPERM);
    const std::string stream = mnt_ + "/stream.img";
    ASSERT_EQ(stat(stream.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0444u);
    errno = 0;
    EXPECT_EQ(open(stream.c_str(), O_RDWR | O_CLOEXEC), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_NE(m.log().find("stream.img: open for writing refused (EROFS): streamOptimized"),
              std::string::npos)
        << m.log();
    const std::string delta_img = mnt_ + "/delta.img";
    ASSERT_EQ(stat(delta_img.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0444u);
    errno = 0;
    EXPECT_EQ(open(delta_img.c_str(), O_RDWR | O_CLOEXEC), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_NE(m.log().find("delta.img: open for writing refused (EROFS): seSparse"),
              std::string::npos)
        << m.log();
    EXPECT_TRUE(m.stop()) << m.log();
  }
  std::memcpy(model_.data() + kDiskBytes - 2, "ab", 2);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(vmdk_), model_), -1);
  expect_check_clean(vmdk_);
  // Without -o rw the kernel refuses, and the mode says so.
  RwMount ro(args(false), mnt_, log_);
  ASSERT_TRUE(ro.mounted()) << ro.log();
  struct stat st {};
  ASSERT_EQ(stat(img().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  errno = 0;
  EXPECT_EQ(open(img().c_str(), O_RDWR | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EROFS);
}

// --local over the nbd transport: qemu-nbd serves the VMDK, so qemu's own VMDK driver takes the
// writes; fsync becomes NBD_CMD_FLUSH (counted in stats.json as the transport's flushes).
TEST_F(FsWriteLocal, NbdWritesReachQemuNbdWithFlush) {
  std::vector<std::string> a;
  auto server_owner = serve_over_nbd("", &a);
  vixtest::PortServer& server = *server_owner;
  ASSERT_TRUE(server.ready()) << server.log();
  {
    RwMount m(a, mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    std::mt19937_64 rng(5);
    for (int i = 0; i < 60; ++i) {
      const size_t len = 1 + rng() % 20000;
      const uint64_t off = rng() % (kDiskBytes - len);
      std::vector<uint8_t> data(len);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(pwrite_all(fd, data.data(), len, off)) << strerror(errno) << m.log();
      std::memcpy(model_.data() + off, data.data(), len);
    }
    ASSERT_EQ(fsync(fd), 0) << strerror(errno) << m.log();
    EXPECT_EQ(first_difference(pread_all(fd, kDiskBytes), model_), -1) << "through the mount";
    close(fd);
    const std::string stats = read_text(mnt_ + "/.vixfs/stats.json");
    const size_t disk = stats.find("\"disk.img\"");
    ASSERT_NE(disk, std::string::npos) << stats;
    EXPECT_NE(stats.find("\"transport\": \"nbd (nbd)\"", disk), std::string::npos) << stats;
    const size_t io = stats.find("\"transportIo\"", disk);
    const size_t flushes = stats.find("\"flushes\": ", io);
    ASSERT_NE(flushes, std::string::npos) << stats;
    EXPECT_GT(std::stoul(stats.substr(flushes + 11)), 0u) << "no FLUSH reached nbd: " << stats;
    EXPECT_TRUE(m.stop()) << m.log();
  }
  server.stop();
  expect_check_clean(vmdk_);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(vmdk_), model_), -1) << "qemu-img";
}

// fallocate PUNCH_HOLE over nbd: NBD_CMD_WRITE_ZEROES that may punch (qemu-nbd --discard=unmap),
// zeros exactly in the range, the bytes around it kept, at unaligned edges too; allocating is
// still refused. qemu-img reads the VMDK afterwards, qemu-nbd's trace shows what was sent.
TEST_F(FsWriteLocal, PunchHoleOverNbdReadsZerosAndKeepsNeighbours) {
  const std::string trace = dir_.file("qemu-nbd.log");
  std::vector<std::string> a;
  auto server_owner = serve_over_nbd("--discard=unmap -T nbd_receive_request", &a);
  vixtest::PortServer& server = *server_owner;
  ASSERT_TRUE(server.ready()) << server.log();
  {
    RwMount m(a, mnt_, log_);
    ASSERT_TRUE(m.mounted()) << m.log();
    const int fd = open(img().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    std::vector<uint8_t> data(3 << 20);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 5 + (i >> 9) + 1);
    ASSERT_TRUE(pwrite_all(fd, data.data(), data.size(), 1 << 20)) << strerror(errno);
    std::memcpy(model_.data() + (1 << 20), data.data(), data.size());
    ASSERT_EQ(fsync(fd), 0) << strerror(errno) << m.log();
    EXPECT_EQ(first_difference(pread_all(fd, kDiskBytes), model_), -1) << "before punching";

    // fallocate(1), both edges inside sectors, as a user would run it.
    const uint64_t off = (1 << 20) + 777, len = (1 << 20) + 1000;
    auto r = run("fallocate -p -o " + std::to_string(off) + " -l " + std::to_string(len) + " " +
                 sh_quote(img()));
    ASSERT_EQ(r.exit_code, 0) << r.output << m.log();
    std::memset(model_.data() + off, 0, len);
    // Inside one sector: written as zeros.
    ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (3 << 20) + 10, 100), 0)
        << strerror(errno);
    std::memset(model_.data() + (3 << 20) + 10, 0, 100);
    // Past the end is cut there (POSIX: the size is kept).
    ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kDiskBytes - 1000, 8192), 0)
        << strerror(errno);
    std::memset(model_.data() + kDiskBytes - 1000, 0, 1000);
    // ZERO_RANGE takes the same path; without KEEP_SIZE it may not grow the disk.
    ASSERT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, (2 << 20) + 4096, 70000), 0) << strerror(errno);
    std::memset(model_.data() + (2 << 20) + 4096, 0, 70000);
    errno = 0;
    EXPECT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, kDiskBytes - 512, 1024), -1);
    EXPECT_EQ(errno, EFBIG);
    errno = 0;
    EXPECT_EQ(fallocate(fd, 0, 0, 65536), -1) << "allocating cannot be promised";
    EXPECT_EQ(errno, EOPNOTSUPP);
    EXPECT_EQ(first_difference(pread_all(fd, kDiskBytes), model_), -1) << "through the mount";
    ASSERT_EQ(fsync(fd), 0) << strerror(errno);
    close(fd);

    const std::string stats = read_text(mnt_ + "/.vixfs/stats.json");
    const size_t disk = stats.find("\"disk.img\"");
    ASSERT_NE(disk, std::string::npos) << stats;
    const size_t unmaps = stats.find("\"unmaps\": ", stats.find("\"transportIo\"", disk));
    ASSERT_NE(unmaps, std::string::npos) << stats;
    EXPECT_GE(std::stoul(stats.substr(unmaps + 10)), 1u) << stats;
    EXPECT_TRUE(m.stop()) << m.log();
  }
  server.stop();
  EXPECT_NE(server.log().find(".type = 0x6,"), std::string::npos)
      << "no NBD_CMD_WRITE_ZEROES reached qemu-nbd";
  expect_check_clean(vmdk_);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(vmdk_), model_), -1) << "qemu-img";
}

}  // namespace
