// vixfs::DiskFile's write path without a mount (the kernel serializes a FUSE file's writes, so
// only here do writers really race): read-modify-write of shared edge sectors under the range
// lock, the allocation map after writes into holes, the end of the disk, the write policy; and
// the read map's pieces outliving a close.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "vix/connection.h"
#include "vix/library.h"

#include "fs/disk_file.h"

namespace {

using vixtest::run_ok;
using vixtest::sh_quote;

class DiskFileWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(vix::Library::init({}, "", "").ok());
    run_ok("qemu-img create -q -f vmdk " + sh_quote(vmdk_) + " 8M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 64k' " + sh_quote(vmdk_));
    auto conn = vix::Connection::connect({}, false, "", "file");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    conn_ = std::move(conn).value();
    file_ = std::make_unique<vixfs::DiskFile>(conn_.get(), vmdk_, "d.img", kSize);
    file_->set_write_policy([this] { return why_not_; });
    model_ = vixtest::qemu_raw(vmdk_);
  }
  void TearDown() override {
    file_.reset();
    conn_.reset();
    vix::Library::exit();
  }
  static constexpr uint64_t kSize = 8 << 20;
  vixtest::TempDir dir_;
  std::string vmdk_ = dir_.file("d.vmdk");
  std::string why_not_;
  std::unique_ptr<vix::Connection> conn_;
  std::unique_ptr<vixfs::DiskFile> file_;
  std::vector<uint8_t> model_;
};

TEST_F(DiskFileWrite, ConcurrentWritersSharingSectorsLoseNothing) {
  ASSERT_EQ(file_->acquire(true), 0);
  constexpr size_t kL = 300, kThreads = 4, kRounds = 4;
  constexpr uint64_t kBase = 100000, kSpan = 256 << 10;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t round = 0; round < kRounds; ++round) {
        std::vector<uint8_t> data(kL, static_cast<uint8_t>(0x10 * (t + 1) + round));
        for (uint64_t off = kBase + t * kL; off + kL <= kBase + kSpan; off += kThreads * kL) {
          if (file_->write(off, kL, data.data()) != static_cast<ssize_t>(kL)) ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  for (size_t t = 0; t < kThreads; ++t) {
    for (uint64_t off = kBase + t * kL; off + kL <= kBase + kSpan; off += kThreads * kL) {
      std::memset(model_.data() + off, static_cast<int>(0x10 * (t + 1) + kRounds - 1), kL);
    }
  }
  std::vector<uint8_t> back(kSize);
  ASSERT_EQ(file_->read(0, kSize, back.data()), static_cast<ssize_t>(kSize));
  for (size_t i = 0; i < kSize; ++i) ASSERT_EQ(back[i], model_[i]) << "byte " << i;
  EXPECT_EQ(file_->flush(false), 0);
  file_->release();
  EXPECT_EQ(vixtest::qemu_raw(vmdk_), model_);
}

TEST_F(DiskFileWrite, WritesIntoHolesShowUpAsData) {
  file_->learn_allocation();
  const off_t hole = 3 << 20;
  EXPECT_EQ(file_->seek(hole, SEEK_DATA), -ENXIO);
  const uint64_t before = file_->allocated_blocks();
  ASSERT_EQ(file_->acquire(true), 0);
  const uint8_t x[5] = {9, 9, 9, 9, 9};
  ASSERT_EQ(file_->write(hole + 777, 5, x), 5);
  EXPECT_LE(file_->seek(hole, SEEK_DATA), hole + 777);
  EXPECT_GE(file_->seek(hole + 777, SEEK_HOLE), hole + 782);
  EXPECT_GT(file_->allocated_blocks(), before);
  EXPECT_EQ(file_->seek(0, SEEK_HOLE), 65536) << "the old map is kept";
  file_->release();
}

TEST_F(DiskFileWrite, EndOfDiskAndPolicy) {
  ASSERT_EQ(file_->acquire(true), 0);
  const uint8_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(file_->write(kSize, 8, x), -EFBIG);
  EXPECT_EQ(file_->write(kSize - 3, 8, x), 3);
  why_not_ = "the VM's power state is poweredOn";
  EXPECT_FALSE(file_->writable());
  EXPECT_EQ(file_->write(0, 8, x), -EROFS);
  EXPECT_EQ(file_->acquire(true), -EROFS);
  EXPECT_EQ(file_->acquire(false), 0);
  file_->release();
  file_->release();
  std::memcpy(model_.data() + kSize - 3, x, 3);
  EXPECT_EQ(vixtest::qemu_raw(vmdk_), model_);
}

// The file transport's VMDK cannot discard to zeros: every punch fails alike, even one inside a
// single sector (which could have been done with a write), and changes nothing.
TEST_F(DiskFileWrite, PunchHoleOnAVmdkIsNotSupportedAndChangesNothing) {
  ASSERT_EQ(file_->acquire(true), 0);
  EXPECT_EQ(file_->punch_hole(0, 65536), -EOPNOTSUPP);
  EXPECT_EQ(file_->punch_hole(1000, 100), -EOPNOTSUPP);
  EXPECT_EQ(file_->punch_hole(700, 5000), -EOPNOTSUPP);
  EXPECT_EQ(file_->punch_hole(kSize, 4096), 0) << "past the end there is nothing to punch";
  why_not_ = "the VM's power state is poweredOn";
  EXPECT_EQ(file_->punch_hole(0, 512), -EROFS);
  file_->release();
  EXPECT_EQ(vixtest::qemu_raw(vmdk_), model_);
}

// map_read's file pieces keep their disk open: after close_now (an unmount, or a redo-log swap)
// their fds still read the disk's bytes, not a closed or reused descriptor.
TEST_F(DiskFileWrite, MappedPiecesOutliveTheDiskFilesClose) {
  ASSERT_EQ(file_->acquire(false), 0);
  std::vector<vix::HostPiece> pieces;
  ASSERT_EQ(file_->map_read(0, 1 << 20, &pieces), 1 << 20);
  file_->close_now();
  const int unrelated = open("/dev/zero", O_RDONLY | O_CLOEXEC);  // would take a freed fd number
  std::vector<uint8_t> got;
  for (const vix::HostPiece& p : pieces) {
    const size_t at = got.size();
    got.resize(at + p.bytes, 0);
    if (p.fd < 0) continue;
    EXPECT_TRUE(p.keep);
    EXPECT_EQ(pread(p.fd, got.data() + at, p.bytes, static_cast<off_t>(p.offset)),
              static_cast<ssize_t>(p.bytes));
  }
  close(unrelated);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), model_.begin()));
  EXPECT_EQ(file_->stats().mapped_bytes, 1u << 20);
}

}  // namespace
