// The read-ahead cache's memory: one budget shared by the chunks of every cached disk of the
// process, so the total stays under vixfs.cache.maxMB however many disks are open. It allocates
// chunk buffers (on huge pages where they fit), recycles them, keeps one LRU over the chunks of
// all its disks, evicts from it when full, and runs their prefetches on its worker threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "common/worker_pool.h"

namespace vix {

class CacheBudget;

namespace readahead_detail {

// One chunk's memory; its bytes stay counted in the budget until the last holder (the chunk
// table, or a reader still copying out of an evicted chunk) lets go. Then the buffer goes to the
// budget's free list, still counted, for the next chunk of that size.
struct ChunkBuf {
  ChunkBuf(CacheBudget* budget, uint8_t* p, uint64_t n) : budget(budget), data(p), size(n) {}
  ~ChunkBuf();
  ChunkBuf(const ChunkBuf&) = delete;
  ChunkBuf& operator=(const ChunkBuf&) = delete;
  CacheBudget* budget;
  uint8_t* data;
  uint64_t size;
};

// What holds chunks on a budget's LRU (a device's chunk table). Eviction hands a chunk back to its
// owner, with the budget's mutex held, to take it out of the table; the budget knows nothing else
// of its devices.
class ChunkOwner {
 public:
  virtual void evict(uint64_t chunk) = 0;

 protected:
  ~ChunkOwner() = default;
};

struct LruNode {
  ChunkOwner* owner;
  uint64_t chunk;
};

using LruPos = std::list<LruNode>::iterator;

}  // namespace readahead_detail

class CacheBudget {
 public:
  CacheBudget(uint64_t limit_bytes, size_t threads);
  ~CacheBudget();
  CacheBudget(const CacheBudget&) = delete;
  CacheBudget& operator=(const CacheBudget&) = delete;

  // The process-wide budget vix::Connection uses (threads: only honoured on first call).
  static std::shared_ptr<CacheBudget> global(size_t threads = 8);

  void set_limit(uint64_t bytes);
  uint64_t limit() const { return limit_.load(); }
  // Bytes of chunk buffers alive now (cached, loading, still being copied out, or kept on the
  // free list for reuse; a closing disk empties the free list).
  uint64_t used() const { return used_.load(); }
  // Highest `used` seen; never above the limit in force at the time.
  uint64_t peak() const { return peak_.load(); }

  // ---- for the devices on this budget (ReadaheadDevice) ----
  // The inline ones run on every read: no call, no lock of their own.

  // Guards the LRU and the chunk tables and streams of every device on this budget, which is what
  // lets eviction take a chunk from any disk without lock ordering.
  std::mutex& mutex() { return mu_; }
  // Memory for a chunk of n bytes, evicting least recently used chunks of any device to make room
  // (mutex held). Null when even an empty LRU leaves no room: the caller reads around the cache.
  std::shared_ptr<readahead_detail::ChunkBuf> reserve(uint64_t n);
  // The LRU holds ready chunks only (mutex held); the young end is the most recently used.
  readahead_detail::LruPos lru_insert(readahead_detail::ChunkOwner* owner, uint64_t chunk) {
    return lru_.insert(lru_.end(), readahead_detail::LruNode{owner, chunk});
  }
  void lru_touch(readahead_detail::LruPos pos) { lru_.splice(lru_.end(), lru_, pos); }
  void lru_erase(readahead_detail::LruPos pos) { lru_.erase(pos); }
  // Runs a prefetch on the budget's workers; jobs still queued when the budget goes are dropped.
  void submit(std::function<void()> job) { pool_->submit(std::move(job)); }
  // Frees the buffers kept for reuse: what a closing disk freed goes back to the system, not to
  // the other disks.
  void release_free();

 private:
  friend struct readahead_detail::ChunkBuf;
  // Takes a free buffer of exactly n bytes (already counted in `used`), or null.
  uint8_t* take_free(uint64_t n);
  // Frees one cached buffer (oldest first); false if there was none.
  bool drop_free();
  // A released chunk buffer: kept for reuse while the free list has room, else freed.
  void give_back(uint8_t* p, uint64_t n);
  // Evicts the least recently used chunk of any device (mutex held); false if the LRU is empty.
  bool evict_oldest();

  std::atomic<uint64_t> limit_{0};
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> peak_{0};
  std::mutex mu_;
  std::list<readahead_detail::LruNode> lru_;  // front: least recently used
  // Released chunk buffers kept for reuse: a fresh 1 MiB allocation is an mmap and 256 page
  // faults, a recycled one is neither. Counted in `used`; a leaf lock (taken under `mu_` or not).
  std::mutex free_mu_;
  std::vector<std::pair<uint64_t, uint8_t*>> free_bufs_;
  static constexpr size_t kMaxFree = 32;
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace vix
