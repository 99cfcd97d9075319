// ReadaheadDevice::unmap: chunks cached before a discard are never served after it, whether the
// device below discards (reads zeros) or cannot (VIX_E_NOT_SUPPORTED, nothing dropped needlessly
// changes the bytes).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <vector>

#include "vix/readahead.h"

namespace {

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB;

uint8_t pattern(uint64_t byte) {
  return static_cast<uint8_t>(byte * 11 + (byte >> 9) + 3);
}

// A RAM disk whose unmap zeroes the range (or, with can_discard false, refuses like a device
// without discard); counts the reads that reach it.
class ZeroingDevice final : public vix::BlockDevice {
 public:
  ZeroingDevice(uint64_t bytes, bool can_discard) : data_(bytes), can_discard_(can_discard) {
    for (uint64_t i = 0; i < bytes; ++i) data_[i] = pattern(i);
  }
  uint64_t capacity_sectors() const override { return data_.size() / 512; }
  vix::DiskInfo info() const override {
    vix::DiskInfo d;
    d.capacity_sectors = capacity_sectors();
    return d;
  }
  bool read_only() const override { return false; }
  std::string_view transport_name() const override { return "nbd"; }
  vix::Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override {
    std::lock_guard lock(mu_);
    ++reads_;
    std::memcpy(buf, data_.data() + sector * 512, count * 512);
    return vix::ok();
  }
  vix::Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override {
    std::lock_guard lock(mu_);
    std::memcpy(data_.data() + sector * 512, buf, count * 512);
    return vix::ok();
  }
  vix::Result<void> flush() override { return vix::ok(); }
  vix::Result<void> unmap(uint64_t sector, uint64_t count) override {
    if (!can_discard_) return vix::fail(VIX_E_NOT_SUPPORTED, "test device cannot discard");
    std::lock_guard lock(mu_);
    ++unmaps_;
    std::memset(data_.data() + sector * 512, 0, count * 512);
    return vix::ok();
  }
  vix::Result<std::vector<vix::SectorExtent>> allocated(uint64_t sector, uint64_t count) override {
    return std::vector<vix::SectorExtent>{{sector, count}};
  }
  int reads() const { return reads_.load(); }
  int unmaps() const { return unmaps_.load(); }

 private:
  std::mutex mu_;
  std::vector<uint8_t> data_;
  bool can_discard_;
  std::atomic<int> reads_{0}, unmaps_{0};
};

struct Cached {
  ZeroingDevice* mem = nullptr;
  std::unique_ptr<vix::ReadaheadDevice> dev;
};

Cached make(bool can_discard) {
  auto mem = std::make_unique<ZeroingDevice>(4 * kMiB, can_discard);
  Cached c;
  c.mem = mem.get();
  vix::ReadaheadOptions opt;
  opt.chunk_bytes = 256 * kKiB;
  c.dev = std::make_unique<vix::ReadaheadDevice>(std::move(mem), opt,
                                                 std::make_shared<vix::CacheBudget>(16 * kMiB, 2));
  return c;
}

std::vector<uint8_t> read(vix::BlockDevice& dev, uint64_t off, uint64_t len) {
  std::vector<uint8_t> buf(len);
  auto r = dev.read(off / 512, len / 512, buf.data());
  EXPECT_TRUE(r.ok()) << r.error().message;
  return buf;
}

TEST(ReadaheadUnmap, CachedChunksAreNotServedAfterADiscard) {
  Cached c = make(true);
  // Chunks 0..2 cached by one read; a second read of them does not reach the device.
  const uint64_t span = 768 * kKiB;
  auto first = read(*c.dev, 0, span);
  const int reads = c.mem->reads();
  auto again = read(*c.dev, 0, span);
  ASSERT_EQ(c.mem->reads(), reads) << "the chunks were not cached: the test would prove nothing";
  ASSERT_EQ(first, again);
  // Across the chunk 0/1 border and into chunk 2, unaligned to chunks.
  const uint64_t off = 200 * kKiB, len = 400 * kKiB + 1536;
  ASSERT_TRUE(c.dev->unmap(off / 512, len / 512).ok());
  EXPECT_EQ(c.mem->unmaps(), 1);
  auto after = read(*c.dev, 0, span);
  for (uint64_t i = 0; i < span; ++i) {
    const bool gone = i >= off && i < off + len;
    ASSERT_EQ(after[i], gone ? 0 : pattern(i)) << "byte " << i;
  }
}

TEST(ReadaheadUnmap, ADeviceThatCannotDiscardSaysSoAndKeepsItsBytes) {
  Cached c = make(false);
  auto before = read(*c.dev, 0, 512 * kKiB);
  auto r = c.dev->unmap(8, 64);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_EQ(read(*c.dev, 0, 512 * kKiB), before);
  auto out = c.dev->unmap(c.dev->capacity_sectors(), 1);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code, VIX_E_DISK_OUTOFRANGE);
}

}  // namespace
