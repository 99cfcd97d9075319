// Redo logs: vmdk::open_redo_log over a disk opened elsewhere (what a remote disk gets) and
// vix::Connection::open_with_redo_log (the local child made as CreateChild makes one). The disk
// under a log is never written; qemu-img is the oracle for both the disk and a local chain.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "common/byte_source.h"
#include "support/fixtures.h"
#include "unit/vmdk_test_util.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vmdk/vmdk.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;

namespace {

constexpr uint64_t kSectors = (16u << 20) / 512;

class RedoLogOverDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    run_ok("qemu-img create -q -f vmdk " + sh_quote(base_) + " 16M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 1M' -c 'write -P 0x33 10M 100k' " +
           sh_quote(base_));
    model_ = vixtest::qemu_raw(base_);
    base_sum_ = run_ok("sha256sum < " + sh_quote(base_));
  }
  // The base, opened read-only as the nbd or https transport would hand it over.
  std::unique_ptr<vix::BlockDevice> below() {
    vix::vmdk::OpenOptions o;
    auto dev = vix::vmdk::open(*opener_, base_, o);
    EXPECT_TRUE(dev.ok()) << dev.error().message;
    return dev.ok() ? std::move(dev).value() : nullptr;
  }
  std::unique_ptr<vix::BlockDevice> open_log() {
    auto dev = vix::vmdk::open_redo_log(*opener_, log_, below());
    EXPECT_TRUE(dev.ok()) << dev.error().message;
    return dev.ok() ? std::move(dev).value() : nullptr;
  }
  std::vector<uint8_t> read_all(vix::BlockDevice& dev) {
    std::vector<uint8_t> out(kSectors * 512);
    auto r = dev.read(0, kSectors, out.data());
    EXPECT_TRUE(r.ok()) << r.error().message;
    return out;
  }

  TempDir dir_;
  std::string base_ = dir_.file("base.vmdk"), log_ = dir_.file("base.redo.vmdk");
  std::unique_ptr<vix::SourceOpener> opener_ = vix::make_local_opener();
  std::vector<uint8_t> model_;
  std::string base_sum_;
};

TEST_F(RedoLogOverDevice, WritesLandInTheLogAndReadsFallThrough) {
  ASSERT_TRUE(vix::vmdk::create_redo_log(*opener_, log_, kSectors, "[ds1] vm/base.vmdk").ok());
  auto dev = open_log();
  ASSERT_NE(dev, nullptr);
  EXPECT_FALSE(dev->read_only());
  EXPECT_EQ(dev->transport_name(), "file") << "names the transport of the disk under it";
  EXPECT_EQ(dev->info().parent_file_name_hint, "[ds1] vm/base.vmdk");
  // Sector runs that start and end inside grains, so new grains are filled from below.
  std::mt19937_64 rng(17);
  for (int i = 0; i < 60; ++i) {
    const uint64_t count = 1 + rng() % 300;
    const uint64_t sector = rng() % (kSectors - count);
    std::vector<uint8_t> data(count * 512);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    ASSERT_TRUE(dev->write(sector, count, data.data()).ok());
    std::memcpy(model_.data() + sector * 512, data.data(), data.size());
  }
  ASSERT_TRUE(dev->flush().ok());
  EXPECT_EQ(read_all(*dev), model_);
  dev.reset();
  EXPECT_EQ(run_ok("sha256sum < " + sh_quote(base_)), base_sum_) << "the disk below was written";
  // Reopened over a fresh open of the disk: the log alone carries the writes.
  auto again = open_log();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(read_all(*again), model_);
}

TEST_F(RedoLogOverDevice, AllocationJoinsTheLogAndTheDiskBelow) {
  ASSERT_TRUE(vix::vmdk::create_redo_log(*opener_, log_, kSectors, "[ds1] vm/base.vmdk").ok());
  auto dev = open_log();
  ASSERT_NE(dev, nullptr);
  std::vector<uint8_t> one(512, 7);
  const uint64_t written = (6u << 20) / 512 + 3;  // inside a hole of the base
  ASSERT_TRUE(dev->write(written, 1, one.data()).ok());
  auto extents = dev->allocated(0, kSectors);
  ASSERT_TRUE(extents.ok()) << extents.error().message;
  auto covers = [&](uint64_t s) {
    for (const auto& e : *extents) {
      if (s >= e.start && s < e.start + e.count) return true;
    }
    return false;
  };
  EXPECT_TRUE(covers(0)) << "data of the disk below";
  EXPECT_TRUE(covers((10u << 20) / 512)) << "data of the disk below";
  EXPECT_TRUE(covers(written)) << "the log's grain";
  EXPECT_FALSE(covers((3u << 20) / 512)) << "a hole in both";
}

TEST_F(RedoLogOverDevice, ALogOfAnotherSizeIsRefused) {
  ASSERT_TRUE(vix::vmdk::create_redo_log(*opener_, log_, kSectors * 2, "[ds1] x.vmdk").ok());
  auto dev = vix::vmdk::open_redo_log(*opener_, log_, below());
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_DISK_CAPACITY_MISMATCH) << dev.error().message;
}

TEST_F(RedoLogOverDevice, AHintThatCannotBeWrittenIsRefused) {
  auto r = vix::vmdk::create_redo_log(*opener_, log_, kSectors, "[ds1] a\"b.vmdk");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_FILE_NAME_INVALID);
  EXPECT_FALSE(std::filesystem::exists(log_));
}

// The local kind through the library: a child qemu-img follows, CID-checked, never the parent.
class LocalRedoLog : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(vix::Library::init({}, "", "").ok());
    for (const std::string& d : {a_, b_}) {
      run_ok("qemu-img create -q -f vmdk " + sh_quote(d) + " 4M");
    }
    run_ok("qemu-io -f vmdk -c 'write -P 0x11 0 1M' " + sh_quote(a_));
    auto conn = vix::Connection::connect({}, true, "", "file");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    conn_ = std::move(conn).value();
  }
  void TearDown() override {
    conn_.reset();
    vix::Library::exit();
  }
  TempDir dir_;
  std::string a_ = dir_.file("a.vmdk"), b_ = dir_.file("b.vmdk");
  std::string log_ = dir_.file("redo/a.redo.vmdk");
  std::unique_ptr<vix::Connection> conn_;
};

TEST_F(LocalRedoLog, ReadOnlyConnectionWritesIntoAChildAndQemuAgrees) {
  std::filesystem::create_directories(dir_.file("redo"));
  const std::string before = run_ok("sha256sum < " + sh_quote(a_));
  auto model = vixtest::qemu_raw(a_);
  {
    auto disk = conn_->open_with_redo_log(a_, 0, log_);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_FALSE((*disk)->read_only());
    std::vector<uint8_t> data(3 * 512, 0xee);
    ASSERT_TRUE((*disk)->write(2047, 3, data.data()).ok());
    ASSERT_TRUE((*disk)->flush().ok());
    std::memcpy(model.data() + 2047 * 512, data.data(), data.size());
  }
  EXPECT_EQ(run_ok("sha256sum < " + sh_quote(a_)), before);
  EXPECT_EQ(vixtest::qemu_raw(log_), model) << "qemu-img reads the child over its parent";
  // A plain open of the same disk on the same connection is still read-only.
  auto plain = conn_->open(a_, 0);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE((*plain)->read_only());
}

TEST_F(LocalRedoLog, ALogOfAnotherDiskIsRefused) {
  std::filesystem::create_directories(dir_.file("redo"));
  ASSERT_TRUE(conn_->open_with_redo_log(a_, 0, log_).ok());
  auto wrong = conn_->open_with_redo_log(b_, 0, log_);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, VIX_E_DISK_INVALIDCHAIN) << wrong.error().message;
  EXPECT_NE(wrong.error().message.find("belongs to"), std::string::npos);
}

}  // namespace
