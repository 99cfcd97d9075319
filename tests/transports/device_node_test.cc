// The device-node end of san and hotadd: a real loop device (the kernel's block layer, O_DIRECT
// rules, BLKGETSIZE64, read-only devices) and a regular file. The bytes are checked against the
// file under the device.
#include "transports/device_node.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "transports/loop_device.h"

using vixtest::TempDir;

namespace {

constexpr uint64_t kSize = 8 << 20;  // 8 MiB

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; i += 4) {
    const uint32_t x = rng();
    std::memcpy(v.data() + i, &x, std::min<size_t>(4, n - i));
  }
  return v;
}

class DeviceNode : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = dir_.file("disk.raw");
    data_ = pattern(kSize, 7);
    vixtest::write_file(image_, data_);
  }

  static vix::DeviceNodeOptions opts(bool read_only = true, bool unbuffered = false,
                                     uint64_t expected = 0) {
    vix::DeviceNodeOptions o;
    o.read_only = read_only;
    o.unbuffered = unbuffered;
    o.expected_capacity_bytes = expected;
    o.transport_name = "san";
    return o;
  }

  // Reads [sector, sector+count) into a buffer at `misalign` bytes past an aligned address and
  // compares with `want`.
  static void expect_read(vix::BlockDevice& dev, uint64_t sector, uint64_t count,
                          const std::vector<uint8_t>& want, size_t misalign) {
    std::vector<uint8_t> storage(count * 512 + 8192);
    uint8_t* buf =
        storage.data() + (4096 - reinterpret_cast<uintptr_t>(storage.data()) % 4096) + misalign;
    auto r = dev.read(sector, count, buf);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(std::memcmp(buf, want.data() + sector * 512, count * 512), 0)
        << "sectors " << sector << "+" << count << " misalign " << misalign;
  }

  TempDir dir_;
  std::string image_;
  std::vector<uint8_t> data_;
};

TEST_F(DeviceNode, LoopDeviceReadsTheFileUnderIt) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, true);
  auto dev = vix::open_device_node(loop.path(), opts());
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  EXPECT_EQ((*dev)->capacity_sectors(), kSize / 512);
  EXPECT_EQ((*dev)->transport_name(), "san");
  EXPECT_TRUE((*dev)->read_only());
  const vix::DiskInfo info = (*dev)->info();
  EXPECT_EQ(info.capacity_sectors, kSize / 512);
  EXPECT_EQ(info.create_type, "device");
  expect_read(**dev, 0, kSize / 512, data_, 0);
  expect_read(**dev, 3, 17, data_, 0);
  auto ext = (*dev)->allocated(10, 100);
  ASSERT_TRUE(ext.ok());
  ASSERT_EQ(ext->size(), 1u);
  EXPECT_EQ((*ext)[0], (vix::SectorExtent{10, 100}));
}

TEST_F(DeviceNode, RegularFileReadsLikeADevice) {
  auto dev = vix::open_device_node(image_, opts());
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  EXPECT_EQ((*dev)->capacity_sectors(), kSize / 512);
  expect_read(**dev, 0, kSize / 512, data_, 0);
  expect_read(**dev, kSize / 512 - 1, 1, data_, 3);
}

TEST_F(DeviceNode, OutOfRangeRequestsFail) {
  auto dev = vix::open_device_node(image_, opts());
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  std::vector<uint8_t> buf(2 * 512);
  auto past = (*dev)->read(kSize / 512, 1, buf.data());
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, VIX_E_DISK_OUTOFRANGE);
  auto across = (*dev)->read(kSize / 512 - 1, 2, buf.data());
  ASSERT_FALSE(across.ok());
  EXPECT_EQ(across.error().code, VIX_E_DISK_OUTOFRANGE);
  auto wrap = (*dev)->read(UINT64_MAX, 2, buf.data());
  ASSERT_FALSE(wrap.ok());
  EXPECT_EQ(wrap.error().code, VIX_E_DISK_OUTOFRANGE);
  EXPECT_FALSE((*dev)->allocated(0, kSize / 512 + 1).ok());
}

TEST_F(DeviceNode, ADeviceSmallerThanTheDiskIsRefused) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, true);
  auto small = vix::open_device_node(loop.path(), opts(true, false, kSize + 512));
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().code, VIX_E_DISK_RAWTOOSMALL);
  EXPECT_NE(small.error().message.find(loop.path()), std::string::npos) << small.error().message;
  // A LUN larger than its disk ends where the inventory says.
  auto larger = vix::open_device_node(loop.path(), opts(true, false, kSize / 2));
  ASSERT_TRUE(larger.ok()) << larger.error().message;
  EXPECT_EQ((*larger)->capacity_sectors(), kSize / 2 / 512);
  std::vector<uint8_t> buf(512);
  EXPECT_FALSE((*larger)->read(kSize / 2 / 512, 1, buf.data()).ok());
}

TEST_F(DeviceNode, UnusableNodesAreRefusedWithTheirPath) {
  auto missing = vix::open_device_node(dir_.file("nope"), opts());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, VIX_E_FILE_NOT_FOUND);
  EXPECT_NE(missing.error().message.find("nope"), std::string::npos);
  auto folder = vix::open_device_node(dir_.path(), opts());
  ASSERT_FALSE(folder.ok());
  EXPECT_EQ(folder.error().code, VIX_E_INCORRECT_FILE_TYPE);
  vixtest::write_file(dir_.file("empty"), std::string());
  auto empty = vix::open_device_node(dir_.file("empty"), opts());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, VIX_E_DISK_RAWTOOSMALL);
}

TEST_F(DeviceNode, UnbufferedReadsIntoUnalignedBuffers) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, true);
  auto dev = vix::open_device_node(loop.path(), opts(true, true));
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  expect_read(**dev, 0, 8, data_, 0);     // aligned: straight into the caller's buffer
  expect_read(**dev, 1, 1, data_, 1);     // odd address
  expect_read(**dev, 7, 3, data_, 512);   // sector-aligned, not page-aligned
  expect_read(**dev, 5, 5000, data_, 3);  // more than one bounce buffer
  expect_read(**dev, kSize / 512 - 3, 3, data_, 17);
}

TEST_F(DeviceNode, UnbufferedOn4KSectorsReadsAndWritesSingleSectors) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, false, 4096);
  auto dev = vix::open_device_node(loop.path(), opts(false, true));
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  expect_read(**dev, 1, 1, data_, 0);
  expect_read(**dev, 9, 3000, data_, 5);
  // Writes of single 512-byte sectors inside a 4 KiB block keep the block's other sectors.
  std::vector<uint8_t> want = data_;
  const std::vector<uint8_t> a = pattern(512, 1), b = pattern(3 * 512, 2);
  ASSERT_TRUE((*dev)->write(3, 1, a.data()).ok());
  ASSERT_TRUE((*dev)->write(15, 3, b.data()).ok());
  std::memcpy(want.data() + 3 * 512, a.data(), a.size());
  std::memcpy(want.data() + 15 * 512, b.data(), b.size());
  // Concurrent writes to neighbouring sectors of one block: none is lost.
  std::vector<std::thread> threads;
  std::vector<std::vector<uint8_t>> pieces;
  for (int i = 0; i < 8; ++i) pieces.push_back(pattern(512, 100 + i));
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { EXPECT_TRUE((*dev)->write(64 + i, 1, pieces[i].data()).ok()); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) std::memcpy(want.data() + (64 + i) * 512, pieces[i].data(), 512);
  ASSERT_TRUE((*dev)->flush().ok());
  expect_read(**dev, 0, 128, want, 1);
  dev->reset();
  loop.detach();
  EXPECT_TRUE(vixtest::read_file(image_) == want) << "the file under the device differs";
}

TEST_F(DeviceNode, ReadOnlyRefusesWrites) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, true);
  auto dev = vix::open_device_node(loop.path(), opts(true));
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  std::vector<uint8_t> buf(512, 0xee);
  auto w = (*dev)->write(0, 1, buf.data());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_FILE_READ_ONLY);
  // A read-only device cannot be opened read-write.
  auto rw = vix::open_device_node(loop.path(), opts(false));
  ASSERT_FALSE(rw.ok());
  EXPECT_TRUE(rw.error().code == VIX_E_FILE_READ_ONLY || rw.error().code == VIX_E_FILE_ACCESS_ERROR)
      << rw.error().code << " " << rw.error().message;
  EXPECT_TRUE(vixtest::read_file(image_) == data_);
}

TEST_F(DeviceNode, ReadWriteWritesReachTheDevice) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, false);
  for (bool unbuffered : {false, true}) {
    auto dev = vix::open_device_node(loop.path(), opts(false, unbuffered));
    ASSERT_TRUE(dev.ok()) << dev.error().message;
    EXPECT_FALSE((*dev)->read_only());
    const uint32_t seed = unbuffered ? 21 : 11;
    const std::vector<uint8_t> big = pattern(3 << 20, seed), one = pattern(512, seed + 1);
    // Unaligned caller buffers too.
    std::vector<uint8_t> storage(big.size() + 1);
    std::memcpy(storage.data() + 1, big.data(), big.size());
    ASSERT_TRUE((*dev)->write(100, big.size() / 512, storage.data() + 1).ok());
    ASSERT_TRUE((*dev)->write(kSize / 512 - 1, 1, one.data()).ok());
    std::memcpy(data_.data() + 100 * 512, big.data(), big.size());
    std::memcpy(data_.data() + kSize - 512, one.data(), 512);
    ASSERT_TRUE((*dev)->flush().ok());
    expect_read(**dev, 0, kSize / 512, data_, 0);
  }
  loop.detach();
  EXPECT_TRUE(vixtest::read_file(image_) == data_) << "the file under the device differs";
}

TEST_F(DeviceNode, ConcurrentReadsShareOneDevice) {
  VIXTEST_LOOP_OR_SKIP(loop, image_, true);
  auto dev = vix::open_device_node(loop.path(), opts(true, true));
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t s = static_cast<uint64_t>(t); s + 64 <= kSize / 512; s += 4 * 331) {
        expect_read(**dev, s, 64, data_, static_cast<size_t>(t));
      }
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace
