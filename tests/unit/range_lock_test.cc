// RangeLock: overlapping ranges exclude each other, disjoint ones do not, and a read-modify-write
// of shared sectors under it loses no writer's bytes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "vix/range_lock.h"

namespace {

using vix::RangeLock;
using namespace std::chrono_literals;

TEST(RangeLock, DisjointRangesDoNotWait) {
  RangeLock locks;
  auto a = locks.lock(0, 10);
  auto b = locks.lock(10, 20);  // touches, does not overlap
  EXPECT_EQ(locks.held(), 2u);
}

TEST(RangeLock, EmptyRangeHoldsNothing) {
  RangeLock locks;
  auto a = locks.lock(0, 10);
  auto b = locks.lock(5, 5);
  EXPECT_EQ(locks.held(), 1u);
}

TEST(RangeLock, OverlappingRangeWaitsForRelease) {
  RangeLock locks;
  std::atomic<bool> got{false};
  std::thread t;
  {
    auto a = locks.lock(100, 200);
    t = std::thread([&] {
      auto b = locks.lock(199, 300);
      got = true;
    });
    std::this_thread::sleep_for(100ms);
    EXPECT_FALSE(got.load());
  }
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(locks.held(), 0u);
}

TEST(RangeLock, MovedGuardReleasesOnce) {
  RangeLock locks;
  {
    auto a = locks.lock(0, 1);
    auto b = std::move(a);
    EXPECT_EQ(locks.held(), 1u);
  }
  EXPECT_EQ(locks.held(), 0u);
  auto c = locks.lock(0, 1);
  EXPECT_EQ(locks.held(), 1u);
}

// Threads write interleaved byte ranges that share "sectors" of a buffer by copying the whole
// sector out, changing their bytes, pausing, and copying it back: without the lock bytes vanish.
TEST(RangeLock, ReadModifyWriteLosesNothing) {
  constexpr size_t kSector = 64, kSectors = 16, kThreads = 4;
  std::vector<uint8_t> disk(kSector * kSectors, 0);
  RangeLock locks;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        // Thread t owns bytes [t*k, (t+1)*k) of every 4*k block, k = 40: edges mid-sector.
        for (size_t off = t * 40; off + 40 <= disk.size(); off += 160) {
          const uint64_t first = off / kSector, end = (off + 40 + kSector - 1) / kSector;
          auto g = locks.lock(first, end);
          std::vector<uint8_t> copy(disk.begin() + first * kSector, disk.begin() + end * kSector);
          std::memset(copy.data() + (off - first * kSector), static_cast<int>(t + 1 + round), 40);
          std::this_thread::sleep_for(20us);  // widens the race the lock closes
          std::memcpy(disk.data() + first * kSector, copy.data(), copy.size());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t off = 0; off + 40 <= disk.size(); off += 40) {
    const size_t t = (off / 40) % 4;
    if ((off - t * 40) % 160 != 0 || off + 40 > disk.size()) continue;
    for (size_t i = 0; i < 40; ++i) ASSERT_EQ(disk[off + i], t + 1 + 19) << "byte " << off + i;
  }
}

}  // namespace
