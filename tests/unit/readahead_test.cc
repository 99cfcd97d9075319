// The read-ahead cache over a fake transport that records its reads (prefetch, coalescing, budget,
// write invalidation, errors, concurrency), then over a real VMDK opened with EnableCache=1.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <latch>
#include <optional>
#include <random>
#include <thread>

#include "support/fake_device.h"
#include "support/fixtures.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vix/readahead.h"

namespace {

using namespace std::chrono_literals;
constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

uint8_t pattern(uint64_t byte) {
  return static_cast<uint8_t>((byte >> 9) * 31 + byte * 7 + 1);
}

using vixtest::FakeDevice;
using vixtest::Op;

// The transport double: a RAM disk of pattern() bytes that records its calls.
std::unique_ptr<FakeDevice> patterned(uint64_t bytes, std::string transport = "file") {
  auto dev = std::make_unique<FakeDevice>(bytes, std::move(transport));
  dev->fill(pattern);
  return dev;
}

// Waits for a condition that background prefetches will make true; bounded so that a bug fails.
bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 20000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return cond();
}

struct Cached {
  FakeDevice* mem = nullptr;
  std::unique_ptr<vix::ReadaheadDevice> dev;
};

Cached make_cached(uint64_t bytes, uint64_t chunk_bytes, std::shared_ptr<vix::CacheBudget> budget,
                   uint32_t max_window = 16) {
  auto mem = patterned(bytes);
  Cached c;
  c.mem = mem.get();
  vix::ReadaheadOptions opt;
  opt.chunk_bytes = chunk_bytes;
  opt.max_window_chunks = max_window;
  c.dev = std::make_unique<vix::ReadaheadDevice>(std::move(mem), opt, std::move(budget));
  return c;
}

// pattern() over the largest disk the tests use, for memcmp.
const std::vector<uint8_t>& reference() {
  static const std::vector<uint8_t> ref = [] {
    std::vector<uint8_t> v(64 * kMiB);
    for (uint64_t i = 0; i < v.size(); ++i) v[i] = pattern(i);
    return v;
  }();
  return ref;
}

// Reads [off, off+len) through dev and compares with expect (default: the pattern).
::testing::AssertionResult read_matches(vix::BlockDevice& dev, uint64_t off, uint64_t len,
                                        const std::vector<uint8_t>* expect = nullptr) {
  const std::vector<uint8_t>& want = expect ? *expect : reference();
  std::vector<uint8_t> buf(len);
  auto r = dev.read(off / 512, len / 512, buf.data());
  if (!r.ok()) return ::testing::AssertionFailure() << "read failed: " << r.error().message;
  if (std::memcmp(buf.data(), want.data() + off, len) == 0) return ::testing::AssertionSuccess();
  uint64_t i = 0;
  while (buf[i] == want[off + i]) ++i;
  return ::testing::AssertionFailure()
         << "byte " << off + i << " is " << int(buf[i]) << ", want " << int(want[off + i]);
}

TEST(ReadaheadTest, SequentialSmallReadsBecomeFewLargeTransportReads) {
  constexpr uint64_t kSize = 64 * kMiB;
  // Baseline: the transport alone sees every 4 KiB read.
  auto plain = patterned(kSize);
  for (uint64_t off = 0; off < kSize; off += 4 * kKiB) ASSERT_TRUE(read_matches(*plain, off, 4096));

  auto budget = std::make_shared<vix::CacheBudget>(256 * kMiB, 4);
  Cached c = make_cached(kSize, 1 * kMiB, budget);
  for (uint64_t off = 0; off < kSize; off += 4 * kKiB) {
    ASSERT_TRUE(read_matches(*c.dev, off, 4096)) << off;
  }
  vix::ReadaheadStats s = c.dev->snapshot();
  std::cout << "[ readahead ] 64 MiB in 4 KiB reads: " << plain->count(Op::kRead)
            << " transport reads without the cache, " << c.mem->count(Op::kRead) << " with it ("
            << s.hits << " hits, " << s.misses << " misses, " << s.prefetched_bytes
            << " bytes prefetched)\n";
  EXPECT_EQ(plain->count(Op::kRead), kSize / (4 * kKiB));
  EXPECT_EQ(c.mem->count(Op::kRead), kSize / kMiB);  // each chunk exactly once
  for (const vixtest::Call& call : c.mem->calls(Op::kRead)) {
    EXPECT_EQ(call.count * 512, kMiB);
    EXPECT_EQ(call.sector * 512 % kMiB, 0u);
  }
  EXPECT_EQ(s.reads, kSize / (4 * kKiB));
  EXPECT_EQ(s.bytes_read, kSize);
  EXPECT_EQ(s.transport_requests, kSize / kMiB);
  // Most chunks come from prefetches; how many exactly depends on scheduling (a reader that
  // overtakes a queued prefetch reads the chunk itself, still once).
  EXPECT_GE(s.prefetched_bytes, kSize / 2);
  EXPECT_EQ(s.wasted_bytes, 0u);
  EXPECT_GT(s.hits, 100 * s.misses);
  EXPECT_LE(budget->peak(), budget->limit());
}

// A long sequential copy releases the chunks it leaves behind: its memory stays at about its
// window, and the chunks random readers keep coming back to are not pushed out of the LRU.
TEST(ReadaheadTest, ASequentialCopyLeavesRandomReadersChunksCached) {
  // A window of at most 24 / 4 chunks, so the scan holds about 6 ahead + 4 behind + 1 (and a
  // few still loading); without the release it would cycle all 40 through the LRU.
  auto budget = std::make_shared<vix::CacheBudget>(24 * kMiB, 4);
  Cached c = make_cached(64 * kMiB, 1 * kMiB, budget);
  const std::vector<uint64_t> hot = {56, 58, 60, 62};  // chunks, never adjacent
  for (uint64_t chunk : hot) ASSERT_TRUE(read_matches(*c.dev, chunk * kMiB + 8192, 4096));
  const uint64_t before_scan = c.mem->count(Op::kRead);
  for (uint64_t off = 0; off < 40 * kMiB; off += 128 * kKiB) {
    ASSERT_TRUE(read_matches(*c.dev, off, 128 * kKiB)) << off;
  }
  const vix::ReadaheadStats s = c.dev->snapshot();
  EXPECT_GE(s.released_behind, 30u);
  // The scan read each of its chunks once (plus at most its prefetch window past the end).
  EXPECT_LE(c.mem->count(Op::kRead) - before_scan, 40u + 6u);
  const uint64_t after_scan = c.mem->count(Op::kRead);
  for (uint64_t chunk : hot) ASSERT_TRUE(read_matches(*c.dev, chunk * kMiB + 4096, 4096));
  EXPECT_EQ(c.mem->count(Op::kRead), after_scan) << "the scan evicted the random readers' chunks";
  EXPECT_LE(budget->peak(), 24 * kMiB);
}

TEST(ReadaheadTest, RandomReadsDoNotPrefetch) {
  constexpr uint64_t kSize = 64 * kMiB;
  auto budget = std::make_shared<vix::CacheBudget>(256 * kMiB, 4);
  Cached c = make_cached(kSize, 1 * kMiB, budget);
  std::mt19937_64 rng(42);
  for (int i = 0; i < 3000; ++i) {
    uint64_t sector = rng() % (kSize / 512 - 8);
    ASSERT_TRUE(read_matches(*c.dev, sector * 512, 4096));
  }
  vix::ReadaheadStats s = c.dev->snapshot();
  EXPECT_LE(s.prefetched_bytes, 2 * kMiB);
  EXPECT_LE(s.wasted_bytes, 2 * kMiB);
  // Nothing beyond what was asked for: at most every chunk once plus boundary-straddling reads.
  EXPECT_EQ(s.transport_requests, s.misses + s.prefetched_bytes / kMiB);
  EXPECT_LE(c.mem->count(Op::kRead), kSize / kMiB + 2);
  EXPECT_GT(s.hits, 2000u);  // 3000 reads over 64 chunks: the rest are cached
}

TEST(ReadaheadTest, MemoryStaysUnderTheBudgetAcrossDevices) {
  constexpr uint64_t kLimit = 8 * kMiB;
  auto budget = std::make_shared<vix::CacheBudget>(kLimit, 4);
  std::vector<Cached> devs;
  for (int i = 0; i < 4; ++i) devs.push_back(make_cached(32 * kMiB, 256 * kKiB, budget));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (uint64_t off = 0; off < 32 * kMiB; off += 64 * kKiB) {
        if (!read_matches(*devs[i].dev, off, 64 * kKiB)) ++bad;
      }
    });
    threads.emplace_back([&, i] {
      std::mt19937_64 rng(i);
      for (int n = 0; n < 400; ++n) {
        uint64_t off = rng() % (32 * kMiB / 512 - 64) * 512;
        if (!read_matches(*devs[(i + 1) % 4].dev, off, 32 * kKiB)) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(budget->peak(), kLimit);
  EXPECT_GE(budget->peak(), kLimit / 2);  // the cache was actually used
  uint64_t transport = 0;
  for (auto& d : devs) transport += d.mem->count(Op::kRead);
  EXPECT_GT(transport, 4 * 32 * kMiB / (256 * kKiB));  // 128 MiB through 8 MiB: evictions
  devs.clear();
  EXPECT_EQ(budget->used(), 0u);
}

TEST(ReadaheadTest, ConcurrentReadsOfOneChunkAreCoalesced) {
  auto budget = std::make_shared<vix::CacheBudget>(64 * kMiB, 4);
  Cached c = make_cached(16 * kMiB, 1 * kMiB, budget);
  c.mem->set_delay(50ms);
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      if (!read_matches(*c.dev, 5 * kMiB + 4096, 4096)) ++bad;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(c.mem->count(Op::kRead), 1u);
  vix::ReadaheadStats s = c.dev->snapshot();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, kThreads - 1u);
  EXPECT_EQ(s.prefetched_bytes, 0u);
}

TEST(ReadaheadTest, WritesAreSeenByLaterReads) {
  constexpr uint64_t kSize = 8 * kMiB;
  auto budget = std::make_shared<vix::CacheBudget>(64 * kMiB, 4);
  Cached c = make_cached(kSize, 256 * kKiB, budget);
  std::vector<uint8_t> expect(kSize);
  for (uint64_t i = 0; i < kSize; ++i) expect[i] = pattern(i);
  for (uint64_t off = 0; off < 2 * kMiB; off += 4096) ASSERT_TRUE(read_matches(*c.dev, off, 4096));
  // Unaligned to chunks, spanning three of them, all cached or being prefetched.
  const uint64_t woff = 256 * kKiB - 3 * 512, wlen = 300 * kKiB;
  std::vector<uint8_t> data(wlen);
  for (uint64_t i = 0; i < wlen; ++i) data[i] = static_cast<uint8_t>(0xA5 ^ i);
  ASSERT_TRUE(c.dev->write(woff / 512, wlen / 512, data.data()).ok());
  std::memcpy(expect.data() + woff, data.data(), wlen);
  EXPECT_TRUE(read_matches(*c.dev, woff - 4096, wlen + 8192, &expect));
  EXPECT_TRUE(read_matches(*c.dev, 0, kSize, &expect));
  ASSERT_TRUE(c.dev->flush().ok());
  EXPECT_EQ(c.mem->count(Op::kFlush), 1u);
  EXPECT_EQ(c.dev->snapshot().writes, 1u);
  EXPECT_EQ(c.dev->transport_name(), "file");
  EXPECT_EQ(c.dev->capacity_sectors(), kSize / 512);
}

TEST(ReadaheadTest, PrefetchRacingAWriteDoesNotInstallStaleBytes) {
  auto budget = std::make_shared<vix::CacheBudget>(64 * kMiB, 4);
  Cached c = make_cached(8 * kMiB, 256 * kKiB, budget);
  // The prefetch of chunk 1 copies the old bytes, then stalls until after the write.
  c.mem->hold_reads(256 * kKiB / 512, 256 * kKiB / 512);
  ASSERT_TRUE(read_matches(*c.dev, 0, 4096));     // new stream
  ASSERT_TRUE(read_matches(*c.dev, 4096, 4096));  // sequential: prefetch chunk 1
  ASSERT_TRUE(c.mem->wait_held(1));
  std::vector<uint8_t> data(4096, 0x5A);
  ASSERT_TRUE(c.dev->write(300 * kKiB / 512, 8, data.data()).ok());
  c.mem->hold_reads(0, 0);
  std::vector<uint8_t> expect(8 * kMiB);
  for (uint64_t i = 0; i < expect.size(); ++i) expect[i] = pattern(i);
  std::memcpy(expect.data() + 300 * kKiB, data.data(), data.size());
  // Whether the stale prefetch has finished or not, the bytes read now are the written ones.
  EXPECT_TRUE(read_matches(*c.dev, 256 * kKiB, 256 * kKiB, &expect));
  EXPECT_TRUE(eventually([&] { return c.dev->snapshot().prefetched_bytes > 0; }));
  EXPECT_TRUE(read_matches(*c.dev, 296 * kKiB, 8192, &expect));
  uint64_t chunk1_reads = 0;
  for (const vixtest::Call& call : c.mem->calls(Op::kRead)) {
    chunk1_reads += call.sector * 512 == 256 * kKiB;
  }
  EXPECT_EQ(chunk1_reads, 2u);  // the stale prefetch, then a fresh read
}

TEST(ReadaheadTest, FailedReadsReturnTheErrorAndAreNotCached) {
  auto budget = std::make_shared<vix::CacheBudget>(64 * kMiB, 4);
  Cached c = make_cached(8 * kMiB, 256 * kKiB, budget);
  c.mem->fail_reads(512 * kKiB / 512, 256 * kKiB / 512);  // chunk 2
  std::vector<uint8_t> buf(4096);
  auto r = c.dev->read(520 * kKiB / 512, 8, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_INVAL));
  EXPECT_NE(r.error().message.find("injected failure"), std::string::npos);
  EXPECT_FALSE(c.dev->read(520 * kKiB / 512, 8, buf.data()).ok());
  EXPECT_EQ(c.mem->count(Op::kRead), 2u);  // the failure was not cached
  // Coalesced waiters of a failing load all get the error.
  c.mem->set_delay(30ms);
  std::latch start(6);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      std::vector<uint8_t> b(512);
      start.arrive_and_wait();
      if (!c.dev->read(600 * kKiB / 512, 1, b.data()).ok()) ++failed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 6);
  c.mem->set_delay(0ms);
  c.mem->fail_reads(0, 0);
  EXPECT_TRUE(read_matches(*c.dev, 520 * kKiB, 4096));
  EXPECT_GE(c.dev->snapshot().errors, 3u);
  EXPECT_EQ(c.dev->snapshot().prefetch_errors, 0u);
  // Out of range is the usual error, without a transport read.
  uint64_t before = c.mem->count(Op::kRead);
  auto oor = c.dev->read(8 * kMiB / 512 - 1, 2, buf.data());
  ASSERT_FALSE(oor.ok());
  EXPECT_EQ(oor.error().code, static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));
  EXPECT_EQ(c.mem->count(Op::kRead), before);
}

TEST(ReadaheadTest, FailedPrefetchIsDroppedSilently) {
  auto budget = std::make_shared<vix::CacheBudget>(64 * kMiB, 4);
  Cached c = make_cached(8 * kMiB, 256 * kKiB, budget);
  c.mem->fail_reads(1 * kMiB / 512, 256 * kKiB / 512);  // chunk 4
  for (uint64_t off = 0; off < 1 * kMiB; off += 4096) ASSERT_TRUE(read_matches(*c.dev, off, 4096));
  ASSERT_TRUE(eventually([&] { return c.dev->snapshot().prefetch_errors > 0; }));
  // Chunks past the failed one were prefetched and are served.
  EXPECT_TRUE(read_matches(*c.dev, 1 * kMiB + 256 * kKiB, 4096));
  std::vector<uint8_t> buf(4096);
  EXPECT_FALSE(c.dev->read(1 * kMiB / 512, 8, buf.data()).ok());
}

TEST(ReadaheadTest, SixteenThreadsOfRandomReadsSeeTheRightBytes) {
  constexpr uint64_t kSize = 48 * kMiB;
  auto budget = std::make_shared<vix::CacheBudget>(6 * kMiB, 4);
  Cached c = make_cached(kSize, 512 * kKiB, budget);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      uint64_t seq = rng() % (kSize / 512 / 2) * 512;
      for (int n = 0; n < 300; ++n) {
        uint64_t len = (1 + rng() % 128) * 512;
        uint64_t off;
        if (t % 4 == 0) {  // a few sequential readers among the random ones
          off = seq + len > kSize ? 0 : seq;
          seq = off + len;
        } else {
          off = rng() % ((kSize - len) / 512 + 1) * 512;
        }
        if (!read_matches(*c.dev, off, len)) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(budget->peak(), 6 * kMiB);
  vix::ReadaheadStats s = c.dev->snapshot();
  std::cout << "[ readahead ] stress: " << s.transport_requests << " transport reads, "
            << s.bypass_reads << " bypassing, " << s.hits << " hits, " << s.misses << " misses, "
            << s.prefetched_bytes << " prefetched, " << s.wasted_bytes << " wasted\n";
  EXPECT_EQ(s.reads, 16u * 300u);
  EXPECT_EQ(s.errors, 0u);
}

TEST(ReadaheadTest, DestroyingWaitsForPrefetchesAndFreesMemory) {
  auto budget = std::make_shared<vix::CacheBudget>(64 * kMiB, 4);
  {
    Cached c = make_cached(32 * kMiB, 256 * kKiB, budget);
    c.mem->set_delay(5ms);
    for (uint64_t off = 0; off < 2 * kMiB; off += 64 * kKiB) {
      ASSERT_TRUE(read_matches(*c.dev, off, 64 * kKiB));
    }
    EXPECT_GT(budget->used(), 0u);
  }  // prefetches still queued or running here
  EXPECT_EQ(budget->used(), 0u);
  // The pool keeps serving other devices afterwards.
  Cached d = make_cached(4 * kMiB, 256 * kKiB, budget);
  // Two reads make a stream and queue the next chunk; nobody reads it until the pool has.
  ASSERT_TRUE(read_matches(*d.dev, 0, 16 * kKiB));
  ASSERT_TRUE(read_matches(*d.dev, 16 * kKiB, 16 * kKiB));
  EXPECT_TRUE(eventually([&] { return d.dev->snapshot().prefetched_bytes > 0; }));
  for (uint64_t off = 32 * kKiB; off < 4 * kMiB; off += 16 * kKiB) {
    ASSERT_TRUE(read_matches(*d.dev, off, 16 * kKiB));
  }
}

TEST(ReadaheadTest, OptionsComeFromTheConfig) {
  std::vector<std::string> warnings;
  auto cfg = vix::Config::parse("", "t", &warnings);
  ASSERT_TRUE(cfg.ok());
  auto o = vix::readahead_options(*cfg, "file");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->chunk_bytes, 1 * kMiB);
  EXPECT_EQ(o->max_window_chunks, 16u);
  // https defaults to 4 MiB ranges: the server pays per request.
  EXPECT_EQ(vix::readahead_options(*cfg, "https")->chunk_bytes, 4 * kMiB);
  EXPECT_EQ(vix::readahead_options(*cfg, "https")->max_window_chunks, 16u);
  cfg->set("vixfs.cache.chunkKB", "4096");
  cfg->set("vixfs.cache.maxWindowKB", "16384");
  EXPECT_EQ(vix::readahead_options(*cfg, "file")->chunk_bytes, 4 * kMiB);
  EXPECT_EQ(vix::readahead_options(*cfg, "file")->max_window_chunks, 4u);
  EXPECT_EQ(vix::readahead_options(*cfg, "nbd")->chunk_bytes, 2 * kMiB);  // network cap
  EXPECT_EQ(vix::readahead_options(*cfg, "nbd")->max_window_chunks, 8u);
  EXPECT_EQ(vix::readahead_options(*cfg, "https")->chunk_bytes, 4 * kMiB);  // its own cap
  cfg->set("vixfs.cache.chunkKB", "16384");
  EXPECT_EQ(vix::readahead_options(*cfg, "https")->chunk_bytes, 4 * kMiB);
  EXPECT_EQ(vix::readahead_options(*cfg, "file")->chunk_bytes, 16 * kMiB);
  cfg->set("vixfs.cache.chunkKB", "1");
  auto bad = vix::readahead_options(*cfg, "file");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("vixfs.cache.chunkKB"), std::string::npos);
  // Off by default; off means the device is handed back as it is.
  auto plain = patterned(kMiB, "nbd");
  vix::BlockDevice* raw = plain.get();
  vix::ReadaheadDevice* cache = nullptr;
  auto same = vix::wrap_readahead_if_enabled(std::move(plain), vix::Config(), &cache);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->get(), raw);
  EXPECT_EQ(cache, nullptr);
  vix::Config on;
  on.set("vixDiskLib.disklib.EnableCache", "1");
  auto wrapped = vix::wrap_readahead_if_enabled(std::move(*same), on, &cache);
  ASSERT_TRUE(wrapped.ok());
  EXPECT_NE(wrapped->get(), raw);
  EXPECT_EQ((*wrapped)->transport_name(), "nbd");
  ASSERT_EQ(cache, wrapped->get());
  EXPECT_EQ(cache->snapshot().chunk_bytes, 1 * kMiB);
}

// ---- the real path: EnableCache=1 in the library's config, file transport, VMDK engine ----

class ReadaheadVmdkTest : public ::testing::Test {
 protected:
  void TearDown() override { vix::Library::exit(); }
  void init(const std::string& config_text) {
    std::string cfg = dir_.file("vixfs.conf");
    vixtest::write_file(cfg, config_text);
    ASSERT_TRUE(vix::Library::init({}, "", cfg).ok());
  }
  vixtest::TempDir dir_;
};

TEST_F(ReadaheadVmdkTest, CachedDiskReadsTheBytesQemuReads) {
  ASSERT_NO_FATAL_FAILURE(
      init("vixDiskLib.disklib.EnableCache = \"1\"\nvixfs.cache.chunkKB = \"256\"\n"
           "vixfs.cache.fileTransport = \"1\"\n"));
  std::string img = dir_.file("d.vmdk");
  vixtest::run_ok("qemu-img create -q -f vmdk " + vixtest::sh_quote(img) + " 24M");
  vixtest::run_ok(
      "qemu-io -f vmdk -c 'write -q -P 0x11 0 4k' -c 'write -q -P 0x22 1M 3M' "
      "-c 'write -q -P 0x33 20M 64k' -c 'write -q -P 0x44 23M 1M' " +
      vixtest::sh_quote(img));
  auto raw = vixtest::qemu_raw(img);
  ASSERT_EQ(raw.size(), 24 * kMiB);
  auto conn = vix::Connection::connect({}, false, "", "");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  {
    auto disk = (*conn)->open(img, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(), "file");
    ASSERT_TRUE((*disk)->cache_stats().has_value());
    std::vector<uint8_t> buf(4096);
    for (uint64_t off = 0; off < raw.size(); off += buf.size()) {
      ASSERT_TRUE((*disk)->read(off / 512, 8, buf.data()).ok());
      ASSERT_EQ(0, std::memcmp(buf.data(), raw.data() + off, buf.size())) << off;
    }
    auto s = *(*disk)->cache_stats();
    EXPECT_EQ(s.chunk_bytes, 256 * kKiB);
    EXPECT_EQ(s.reads, raw.size() / 4096);
    EXPECT_EQ(s.transport_requests, raw.size() / (256 * kKiB));
    EXPECT_GT(s.prefetched_bytes, raw.size() / 2);
  }
  // Written bytes go through to the VMDK, and the cache serves them afterwards.
  auto disk = (*conn)->open(img, 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(8192);
  ASSERT_TRUE((*disk)->read(2 * kMiB / 512, 16, buf.data()).ok());
  std::vector<uint8_t> data(4096, 0x77);
  ASSERT_TRUE((*disk)->write(2 * kMiB / 512 + 1, 8, data.data()).ok());
  ASSERT_TRUE((*disk)->read(2 * kMiB / 512, 16, buf.data()).ok());
  EXPECT_EQ(buf[0], 0x22);
  EXPECT_EQ(buf[512], 0x77);
  EXPECT_EQ(buf[4607], 0x77);
  EXPECT_EQ(buf[4608], 0x22);
  disk->reset();
  auto after = vixtest::qemu_raw(img);
  EXPECT_EQ(after[2 * kMiB + 512], 0x77);
  EXPECT_EQ(after[2 * kMiB + 4608], 0x22);
}

// Whether a fresh 4 MiB VMDK at `img` opens with the cache in front of it (empty when it does
// not open at all).
std::optional<bool> fresh_disk_is_cached(const std::string& img) {
  vixtest::run_ok("qemu-img create -q -f vmdk " + vixtest::sh_quote(img) + " 4M");
  auto conn = vix::Connection::connect({}, true, "", "");
  if (!conn.ok()) return std::nullopt;
  auto disk = (*conn)->open(img, 0);
  if (!disk.ok()) return std::nullopt;
  return (*disk)->cache_stats().has_value();
}

TEST_F(ReadaheadVmdkTest, CacheIsOffWithoutEnableCache) {
  ASSERT_NO_FATAL_FAILURE(init("vixDiskLib.disklib.EnableCache = \"0\"\n"));
  const std::optional<bool> cached = fresh_disk_is_cached(dir_.file("d.vmdk"));
  ASSERT_TRUE(cached.has_value());
  EXPECT_FALSE(*cached);
}

// Local files already have the kernel's page cache: EnableCache leaves them alone unless
// vixfs.cache.fileTransport asks for the cache in front of them too.
TEST_F(ReadaheadVmdkTest, FileTransportIsNotCachedUnlessAsked) {
  ASSERT_NO_FATAL_FAILURE(init("vixDiskLib.disklib.EnableCache = \"1\"\n"));
  const std::optional<bool> cached = fresh_disk_is_cached(dir_.file("d.vmdk"));
  ASSERT_TRUE(cached.has_value());
  EXPECT_FALSE(*cached);
}

}  // namespace
