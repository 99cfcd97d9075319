// Read-ahead cache (vixDiskLib.disklib.EnableCache=1): a BlockDevice decorator that serves reads
// from fixed-size chunks, detects sequential streams and prefetches ahead of them on background
// threads. Memory for chunks comes from a CacheBudget (cache_budget.h) shared by every cached disk
// of the process, so the total stays under vixfs.cache.maxMB however many disks are open; which
// chunks to prefetch and release is the StreamPolicy's (readahead_policy.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "common/block_device.h"
#include "common/config.h"
#include "vix/cache_budget.h"

namespace vix {

struct ReadaheadOptions {
  uint64_t chunk_bytes = 1 << 20;   // vixfs.cache.chunkKB
  uint32_t max_window_chunks = 16;  // vixfs.cache.maxWindowKB / chunk
  uint32_t max_streams = 8;         // sequential streams tracked per disk
};

// Reads vixfs.cache.{chunkKB,maxWindowKB} for a device of `transport`: network transports (anything
// but "file") get chunks of at most 2 MiB. Out-of-range values are VIX_E_INVALID_ARG naming the
// key.
Result<ReadaheadOptions> readahead_options(const Config& config, std::string_view transport);

// Counters of one cached disk (for stats.json). Hits and misses count chunk lookups: a hit is a
// chunk the caller did not have to read from the transport itself (cached, or coalesced with a
// read already in flight).
struct ReadaheadStats {
  uint64_t chunk_bytes = 0;
  uint64_t reads = 0;       // read requests
  uint64_t bytes_read = 0;  // bytes returned to callers
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t prefetched_bytes = 0;    // read from the transport by prefetches
  uint64_t wasted_bytes = 0;        // prefetched, then evicted or invalidated unread
  uint64_t transport_requests = 0;  // reads sent to the transport
  uint64_t transport_bytes = 0;
  uint64_t writes = 0;
  uint64_t errors = 0;                // failed transport reads (demand and prefetch)
  uint64_t prefetch_errors = 0;       // of which prefetches, dropped silently
  uint64_t bypass_reads = 0;          // chunk reads served uncached because the budget was full
  uint64_t released_behind = 0;       // chunks a sequential stream read and left behind, freed
  void add(const ReadaheadStats& o);  // sums the counters; chunk_bytes is o's
};

// Overrides what the cache changes (reads, and the writes and discards that invalidate chunks);
// everything else passes through BlockDeviceWrapper to the device below.
class ReadaheadDevice final : public BlockDeviceWrapper {
 public:
  ReadaheadDevice(std::unique_ptr<BlockDevice> inner, ReadaheadOptions options,
                  std::shared_ptr<CacheBudget> budget);
  // Waits for this device's running prefetches; returns its memory to the budget.
  ~ReadaheadDevice() override;

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override;
  // Memory pieces of the cached chunks (kept alive by the pieces), loaded or waited for as read()
  // would; counted as a read. Parts the budget has no room for come in buffers of their own.
  Result<bool> map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) override;
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override;
  // Drops the cached chunks the range touches, before and after the device discards it, so no
  // later read is served the bytes the discard removed.
  Result<void> unmap(uint64_t sector, uint64_t count) override;

  ReadaheadStats snapshot() const;
  CacheBudget& budget() { return *budget_; }

  struct State;  // shared with queued prefetch jobs, which may outlive the device

 private:
  // Drops the cached chunks [sector, sector+count) touches (a write or a discard changed them).
  void drop_chunks(uint64_t sector, uint64_t count);
  // What read and map_to_host share: plans the prefetches, then calls
  // part(from, to, offset in chunk, chunk) for each chunk the byte range [from, to) of the request
  // falls in, in order; chunk is null when the budget has no room for it (read from the transport).
  template <class Fn>
  Result<void> serve(uint64_t sector, uint64_t count, Fn&& part);

  std::shared_ptr<CacheBudget> budget_;
  std::shared_ptr<State> st_;
};

// Wraps dev in a ReadaheadDevice over CacheBudget::global() when the config has
// vixDiskLib.disklib.EnableCache=1 (vixfs.cache.maxMB, default 256, sets the global limit);
// otherwise returns dev unchanged.
// *cache (when given) receives the ReadaheadDevice, or nullptr when none was put in.
Result<std::unique_ptr<BlockDevice>> wrap_readahead_if_enabled(std::unique_ptr<BlockDevice> dev,
                                                               const Config& config,
                                                               ReadaheadDevice** cache = nullptr);

}  // namespace vix
