// The read-ahead cache's stream policy: which reads continue a sequential stream, how far ahead
// of each stream to prefetch, and which chunks a stream has left behind. Pure bookkeeping over
// offsets (no threads, no I/O, no memory of its own beyond the streams), so that a test can drive
// it with offsets alone; ReadaheadDevice carries its decisions out under the budget's lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vix {

// What to do for one read. Chunk ranges are [from, to) in chunk numbers; empty when from >= to.
struct ReadaheadPlan {
  // The read continues a stream; the ranges below are meaningful only then. A read that starts a
  // stream (or replaces the least recently used one) prefetches nothing.
  bool sequential = false;
  uint32_t stream = 0;  // which stream, for released() and prefetched()
  uint32_t window = 0;  // chunks the stream keeps prefetched ahead of its reads now
  // Chunks the stream read and left behind: to be freed, oldest first.
  uint64_t release_from = 0, release_to = 0;
  // Chunks to queue for prefetch, in order (the device skips those it already has).
  uint64_t prefetch_from = 0, prefetch_to = 0;
};

class StreamPolicy {
 public:
  // A stream trails at most this many chunks behind its reads before they are released: readers
  // of one stream arrive a little out of order.
  static constexpr uint64_t kReleaseSlack = 4;
  // Chunks released by one read at most, so one read never walks a long stretch.
  static constexpr uint64_t kMaxReleasePerRead = 64;

  // chunk_count: chunks of the disk; windows never exceed max_window_chunks (>= 1); at most
  // max_streams (>= 1) streams are tracked, the least recently used one is replaced.
  StreamPolicy(uint64_t chunk_bytes, uint64_t chunk_count, uint32_t max_window_chunks,
               uint32_t max_streams);

  // A read of bytes [begin, end) (end > begin). budget_bytes: the cache's memory limit now; a
  // window is kept under a quarter of it, so that other streams and disks keep the rest.
  ReadaheadPlan on_read(uint64_t begin, uint64_t end, uint64_t budget_bytes);
  // The device released the plan's chunks below `chunk` (it stops at one still loading, which a
  // later read releases).
  void released(const ReadaheadPlan& plan, uint64_t chunk);
  // The device queued (or already had) the plan's chunks below `chunk` (it stops when the budget
  // has no room); they are not queued again.
  void prefetched(const ReadaheadPlan& plan, uint64_t chunk);

  size_t streams() const { return streams_.size(); }

 private:
  struct Stream {
    uint64_t next = 0;        // byte offset a continuing read starts at
    uint32_t window = 0;      // chunks to keep prefetched ahead; 0 = not (yet) sequential
    uint64_t horizon = 0;     // chunks below this were already queued for prefetch
    uint64_t last_chunk = 0;  // highest chunk this stream has read
    uint64_t trail = 0;       // chunks below this were released behind the stream
    uint64_t tick = 0;        // for replacing the least recently used stream
  };

  uint64_t chunk_bytes_;
  uint64_t chunk_count_;
  uint32_t max_window_;
  uint32_t max_streams_;
  std::vector<Stream> streams_;
  uint64_t tick_ = 0;
};

}  // namespace vix
