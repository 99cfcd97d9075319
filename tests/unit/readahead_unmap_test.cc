// ReadaheadDevice::unmap: chunks cached before a discard are never served after it, whether the
// device below discards (reads zeros) or cannot (VIX_E_NOT_SUPPORTED, nothing dropped needlessly
// changes the bytes).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "support/fake_device.h"
#include "vix/readahead.h"

namespace {

constexpr uint64_t kKiB = 1024, kMiB = 1024 * kKiB;

uint8_t pattern(uint64_t byte) {
  return static_cast<uint8_t>(byte * 11 + (byte >> 9) + 3);
}

struct Cached {
  vixtest::FakeDevice* mem = nullptr;
  std::unique_ptr<vix::ReadaheadDevice> dev;
};

Cached make(bool can_discard) {
  // A RAM disk whose unmap zeroes the range, or refuses as a device without discard does.
  auto mem = std::make_unique<vixtest::FakeDevice>(4 * kMiB, "nbd");
  mem->fill(pattern);
  mem->set_discard(can_discard);
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
  const uint64_t reads = c.mem->count(vixtest::Op::kRead);
  auto again = read(*c.dev, 0, span);
  ASSERT_EQ(c.mem->count(vixtest::Op::kRead), reads)
      << "the chunks were not cached: the test would prove nothing";
  ASSERT_EQ(first, again);
  // Across the chunk 0/1 border and into chunk 2, unaligned to chunks.
  const uint64_t off = 200 * kKiB, len = 400 * kKiB + 1536;
  ASSERT_TRUE(c.dev->unmap(off / 512, len / 512).ok());
  EXPECT_EQ(c.mem->count(vixtest::Op::kUnmap), 1u);
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
