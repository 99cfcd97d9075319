// StreamPolicy, the read-ahead cache's decisions, driven with offsets alone: which reads make a
// stream, how the window grows and what caps it, what is prefetched and released, and how many
// streams are tracked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "vix/readahead_policy.h"

namespace {

using vix::ReadaheadPlan;
using vix::StreamPolicy;

constexpr uint64_t kChunk = 1 << 20;
constexpr uint64_t kBudget = uint64_t{1} << 30;  // large enough not to cap a window of 16

// A device that has everything the policy asks for: it prefetches and releases whole ranges.
ReadaheadPlan read_all(StreamPolicy& p, uint64_t begin, uint64_t end, uint64_t budget = kBudget) {
  ReadaheadPlan plan = p.on_read(begin, end, budget);
  if (plan.sequential) {
    p.released(plan, std::max(plan.release_from, plan.release_to));
    p.prefetched(plan, std::max(plan.prefetch_from, plan.prefetch_to));
  }
  return plan;
}

TEST(ReadaheadPolicy, AStreamStartsAtTheSecondContiguousRead) {
  StreamPolicy p(kChunk, 64, 16, 8);
  ReadaheadPlan first = read_all(p, 0, 64 << 10);
  EXPECT_FALSE(first.sequential);
  EXPECT_EQ(p.streams(), 1u);
  ReadaheadPlan second = read_all(p, 64 << 10, 128 << 10);
  ASSERT_TRUE(second.sequential);
  EXPECT_EQ(second.stream, first.stream);
  EXPECT_EQ(second.window, 1u);
  EXPECT_EQ(second.prefetch_from, 1u);  // the chunk after the one being read
  EXPECT_EQ(second.prefetch_to, 2u);
  EXPECT_EQ(second.release_from, second.release_to);
}

TEST(ReadaheadPolicy, AFreshStreamMustBeContinuedExactly) {
  StreamPolicy p(kChunk, 64, 16, 8);
  read_all(p, 0, 4096);
  // A gap of one sector, or a step back, is a new stream: a random read almost never continues.
  EXPECT_FALSE(read_all(p, 4096 + 512, 8192).sequential);
  EXPECT_FALSE(read_all(p, 0, 4096).sequential);
  EXPECT_EQ(p.streams(), 3u);
}

TEST(ReadaheadPolicy, AnEstablishedStreamToleratesReorderingWithinAChunk) {
  StreamPolicy p(kChunk, 64, 16, 8);
  read_all(p, 0, 128 << 10);
  ASSERT_TRUE(read_all(p, 128 << 10, 256 << 10).sequential);
  // Concurrent readers of one stream: a read a little behind and one a little ahead still belong.
  EXPECT_TRUE(read_all(p, 64 << 10, 128 << 10).sequential);
  EXPECT_TRUE(read_all(p, 512 << 10, 640 << 10).sequential);
  EXPECT_EQ(p.streams(), 1u);
  // More than a chunk away is not the stream.
  EXPECT_FALSE(read_all(p, 640 * 1024 + kChunk + 512, 640 * 1024 + kChunk + 4096).sequential);
}

TEST(ReadaheadPolicy, TheWindowDoublesPerNewChunkUpToItsMaximum) {
  StreamPolicy p(kChunk, 1024, 16, 8);
  read_all(p, 0, kChunk / 2);
  std::vector<uint32_t> windows;
  // Half-chunk reads: the window grows when a read reaches a chunk past the highest one read.
  for (uint64_t off = kChunk / 2; off < 8 * kChunk; off += kChunk / 2) {
    ReadaheadPlan plan = read_all(p, off, off + kChunk / 2);
    ASSERT_TRUE(plan.sequential) << off;
    windows.push_back(plan.window);
  }
  const std::vector<uint32_t> want = {1, 2, 2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16};
  EXPECT_EQ(windows, want);
}

TEST(ReadaheadPolicy, TheBudgetCapsTheWindowAtAQuarterOfIt) {
  StreamPolicy p(kChunk, 1024, 16, 8);
  const uint64_t budget = 12 * kChunk;  // a quarter: 3 chunks
  read_all(p, 0, kChunk, budget);
  uint32_t window = 0;
  for (uint64_t c = 1; c < 10; ++c)
    window = read_all(p, c * kChunk, (c + 1) * kChunk, budget).window;
  EXPECT_EQ(window, 3u);
  // Even a budget smaller than four chunks leaves a window of one.
  StreamPolicy tiny(kChunk, 1024, 16, 8);
  read_all(tiny, 0, kChunk, kChunk);
  for (uint64_t c = 1; c < 10; ++c) {
    EXPECT_EQ(read_all(tiny, c * kChunk, (c + 1) * kChunk, kChunk).window, 1u);
  }
}

TEST(ReadaheadPolicy, PrefetchesAreNotQueuedTwiceAndResumeWhereTheDeviceStopped) {
  StreamPolicy p(kChunk, 1024, 16, 8);
  read_all(p, 0, kChunk);
  read_all(p, kChunk, 2 * kChunk);      // window 1: chunk 2 queued
  read_all(p, 2 * kChunk, 3 * kChunk);  // window 2: chunks 3 and 4
  ReadaheadPlan plan = p.on_read(3 * kChunk, 3 * kChunk + kChunk / 2, kBudget);
  ASSERT_TRUE(plan.sequential);
  EXPECT_EQ(plan.window, 4u);
  EXPECT_EQ(plan.prefetch_from, 5u);  // not chunk 4 again
  EXPECT_EQ(plan.prefetch_to, 8u);
  p.released(plan, plan.release_to);
  p.prefetched(plan, 6);  // the budget had room for chunk 5 only
  plan = p.on_read(3 * kChunk + kChunk / 2, 4 * kChunk, kBudget);
  EXPECT_EQ(plan.prefetch_from, 6u);  // chunks 6 and 7 are asked for again
  EXPECT_EQ(plan.prefetch_to, 8u);
}

TEST(ReadaheadPolicy, PrefetchStopsAtTheEndOfTheDisk) {
  StreamPolicy p(kChunk, 10, 16, 8);
  read_all(p, 6 * kChunk, 7 * kChunk);
  for (uint64_t c = 7; c < 10; ++c) {
    ReadaheadPlan plan = read_all(p, c * kChunk, (c + 1) * kChunk);
    ASSERT_TRUE(plan.sequential);
    EXPECT_LE(plan.prefetch_to, 10u);
  }
  ReadaheadPlan last = p.on_read(10 * kChunk - 4096, 10 * kChunk, kBudget);
  EXPECT_GE(last.prefetch_from, last.prefetch_to);  // nothing past chunk 9
}

TEST(ReadaheadPolicy, ChunksLeftBehindAreReleasedAFewBehindTheReader) {
  StreamPolicy p(kChunk, 1024, 16, 8);
  read_all(p, 0, kChunk);
  for (uint64_t c = 1; c < StreamPolicy::kReleaseSlack; ++c) {
    ReadaheadPlan plan = read_all(p, c * kChunk, (c + 1) * kChunk);
    EXPECT_EQ(plan.release_from, plan.release_to) << "too close to release anything: " << c;
  }
  read_all(p, 4 * kChunk, 5 * kChunk);
  ReadaheadPlan plan = p.on_read(5 * kChunk, 6 * kChunk, kBudget);
  EXPECT_EQ(plan.release_from, 0u);
  EXPECT_EQ(plan.release_to, 5 - StreamPolicy::kReleaseSlack);
  p.released(plan, plan.release_to);
  p.prefetched(plan, plan.prefetch_to);
  plan = p.on_read(6 * kChunk, 7 * kChunk, kBudget);
  EXPECT_EQ(plan.release_from, 1u);
  EXPECT_EQ(plan.release_to, 6 - StreamPolicy::kReleaseSlack);
  // The device stops at chunk 1 (still loading): the next read asks for it again.
  p.released(plan, 1);
  p.prefetched(plan, plan.prefetch_to);
  plan = p.on_read(7 * kChunk, 8 * kChunk, kBudget);
  EXPECT_EQ(plan.release_from, 1u);
  EXPECT_EQ(plan.release_to, 7 - StreamPolicy::kReleaseSlack);
}

TEST(ReadaheadPolicy, ALaggingReleaseSkipsAheadInsteadOfWalkingEverything) {
  StreamPolicy p(kChunk, 4096, 16, 8);
  read_all(p, 0, kChunk);
  // The device never gets past chunk 0 (say it stays loading) while the stream reads on.
  ReadaheadPlan plan;
  for (uint64_t c = 1; c < 200; ++c) {
    plan = p.on_read(c * kChunk, (c + 1) * kChunk, kBudget);
    ASSERT_TRUE(plan.sequential);
    ASSERT_LE(plan.release_to - std::min(plan.release_from, plan.release_to),
              StreamPolicy::kMaxReleasePerRead);
    p.released(plan, plan.release_from);
    p.prefetched(plan, plan.prefetch_to);
  }
  EXPECT_EQ(plan.release_to, 199 - StreamPolicy::kReleaseSlack);
  EXPECT_EQ(plan.release_from, plan.release_to - StreamPolicy::kMaxReleasePerRead);
}

TEST(ReadaheadPolicy, TheLeastRecentlyUsedStreamIsReplaced) {
  StreamPolicy p(kChunk, 1024, 16, 2);
  read_all(p, 0, 4096);                             // stream A
  read_all(p, 100 * kChunk, 100 * kChunk + 4096);   // stream B
  ASSERT_TRUE(read_all(p, 4096, 8192).sequential);  // A continues: B is now the older
  EXPECT_FALSE(read_all(p, 500 * kChunk, 500 * kChunk + 4096).sequential);  // C replaces B
  EXPECT_EQ(p.streams(), 2u);
  EXPECT_TRUE(read_all(p, 8192, 12288).sequential);  // A is still there
  EXPECT_FALSE(read_all(p, 100 * kChunk + 4096, 100 * kChunk + 8192).sequential);  // B is not
}

}  // namespace
