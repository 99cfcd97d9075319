// MeteredDevice counts what reaches the device under it: requests, bytes, errors, and latency
// percentiles that bound the truth from above within a factor of two.
#include <gtest/gtest.h>

#include <vector>

#include "support/fake_device.h"
#include "vix/metered.h"

namespace {

// A disk of zeros whose reads fail from sector 1000 on.
std::unique_ptr<vixtest::FakeDevice> zeros() {
  auto dev = std::make_unique<vixtest::FakeDevice>(4096 * vix::kSectorSize, "zeros");
  dev->fail_reads(1000, 4096 - 1000, VIX_E_FILE_ERROR, "injected");
  return dev;
}

TEST(MeteredDevice, CountsRequestsBytesAndErrors) {
  vix::MeteredDevice dev(zeros());
  std::vector<uint8_t> buf(8 * 512);
  ASSERT_TRUE(dev.read(0, 8, buf.data()).ok());
  ASSERT_TRUE(dev.read(8, 4, buf.data()).ok());
  EXPECT_FALSE(dev.read(2000, 1, buf.data()).ok());
  ASSERT_TRUE(dev.write(0, 2, buf.data()).ok());
  ASSERT_TRUE(dev.flush().ok());
  const vix::IoSnapshot s = dev.snapshot();
  EXPECT_EQ(s.read_requests, 3u);
  EXPECT_EQ(s.read_bytes, 12u * 512);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.write_requests, 1u);
  EXPECT_EQ(s.write_bytes, 1024u);
  EXPECT_EQ(s.flushes, 1u);
  EXPECT_EQ(dev.transport_name(), "zeros");
}

TEST(MeteredDevice, PercentilesBoundTheLatencyFromAbove) {
  auto inner = zeros();
  vixtest::FakeDevice* raw = inner.get();
  vix::MeteredDevice dev(std::move(inner));
  std::vector<uint8_t> buf(512);
  for (int i = 0; i < 98; ++i) ASSERT_TRUE(dev.read(0, 1, buf.data()).ok());
  raw->set_delay(std::chrono::milliseconds(20));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(dev.read(0, 1, buf.data()).ok());
  const vix::IoSnapshot s = dev.snapshot();
  EXPECT_GE(s.max_us, 20000u);
  EXPECT_GE(s.p99_us, 20000u / 2);  // the two slow reads are the top 2%
  EXPECT_LE(s.p99_us, s.max_us);
  EXPECT_LT(s.p50_us, 10000u);  // the fast ones
  vix::IoSnapshot sum = s;
  sum.add(s);
  EXPECT_EQ(sum.read_requests, 200u);
  EXPECT_EQ(sum.p99_us, s.p99_us);
}

// Only requests that did I/O on the transport count: a discard the device cannot do, a zero-length
// one (a question) and a map_to_host the device cannot answer do not.
TEST(MeteredDevice, CountsWhatReachedTheTransportOnly) {
  auto inner = zeros();
  vixtest::FakeDevice* raw = inner.get();
  vix::MeteredDevice dev(std::move(inner));
  auto refused = dev.unmap(0, 8);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, VIX_E_NOT_SUPPORTED);
  raw->set_discard(true);
  ASSERT_TRUE(dev.unmap(0, 8).ok());
  ASSERT_TRUE(dev.unmap(0, 0).ok());
  std::vector<vix::HostPiece> pieces;
  auto mapped = dev.map_to_host(0, 8, &pieces);
  ASSERT_TRUE(mapped.ok());
  EXPECT_FALSE(*mapped);
  raw->set_reconnects(3);
  const vix::IoSnapshot s = dev.snapshot();
  EXPECT_EQ(s.unmaps, 1u);
  EXPECT_EQ(s.unmap_bytes, 8u * 512);
  EXPECT_EQ(s.read_requests, 0u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.link_counter("reconnects"), 3u);
  EXPECT_EQ(raw->count(vixtest::Op::kUnmap), 3u);
  EXPECT_EQ(raw->count(vixtest::Op::kMapToHost), 1u);
}

}  // namespace
