// Read-ahead cache: its configuration keys and the hook vix::Connection::open calls.
#include <algorithm>

#include "vix/config_keys.h"
#include "vix/readahead.h"

namespace vix {

namespace {

constexpr IntKey kChunkKB{"vixfs.cache.chunkKB",
                          4,
                          64 * 1024,
                          1024,
                          "size of a cache chunk (KiB; at most 4096 for https, 2048 for nbd)",
                          default_varies("4096 for https")};
constexpr IntKey kMaxWindowKB{"vixfs.cache.maxWindowKB",
                              4,
                              1024 * 1024,
                              16 * 1024,
                              "largest read-ahead window of one stream (KiB)",
                              default_varies("16 chunks")};
constexpr FlagKey kFileTransport{"vixfs.cache.fileTransport", false,
                                 "1: the cache in front of file-transport disks too"};
constexpr IntKey kMaxMB{"vixfs.cache.maxMB", 1, 1 << 20, 256,
                        "memory for the cached chunks of all disks together (MiB)"};
constexpr IntKey kThreads{"vixfs.cache.threads", 1, 64, 8, "threads that run the prefetches"};

}  // namespace

KeyList readahead_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kChunkKB, &kMaxWindowKB, &kFileTransport, &kMaxMB,
                                               &kThreads};
  return kKeys;
}

Result<ReadaheadOptions> readahead_options(const Config& config, std::string_view transport) {
  ReadaheadOptions opt;
  // https pays a fixed cost per range request on the server (vcsim: about 0.7 ms more per
  // 1 MiB range than streaming), so fewer, larger ranges win: 4 MiB x 4 connections is 0.9x of
  // one stream, 1 MiB x 8 is 0.7x. For nbd, larger requests only add latency to a round trip;
  // the window gives the depth.
  const bool https = transport == "https";
  VIX_ASSIGN_OR_RETURN(int64_t chunk_kb, config.get(kChunkKB, https ? 4096 : 1024));
  if (transport != "file") chunk_kb = std::min<int64_t>(chunk_kb, https ? 4096 : 2048);
  opt.chunk_bytes = static_cast<uint64_t>(chunk_kb) * 1024;
  VIX_ASSIGN_OR_RETURN(int64_t window_kb, config.get(kMaxWindowKB, chunk_kb * 16));
  opt.max_window_chunks = static_cast<uint32_t>(std::clamp<int64_t>(window_kb / chunk_kb, 1, 1024));
  return opt;
}

Result<std::unique_ptr<BlockDevice>> wrap_readahead_if_enabled(std::unique_ptr<BlockDevice> dev,
                                                               const Config& config,
                                                               ReadaheadDevice** cache) {
  if (cache) *cache = nullptr;
  VIX_ASSIGN_OR_RETURN(int64_t enable, config.get(kEnableCache));
  if (enable == 0) return dev;
  // The file transport reads through the kernel's page cache, which already reads ahead and
  // keeps what was read; a second cache in front of it only adds a copy and a thread hand-off
  // per chunk (0.37x the uncached speed for a 256 MiB dd) and turns each random 4 KiB read into
  // a 1 MiB one. vixfs.cache.fileTransport = 1 puts it there anyway.
  if (dev->transport_name() == "file") {
    VIX_ASSIGN_OR_RETURN(bool files, config.get(kFileTransport));
    if (!files) return dev;
  }
  VIX_ASSIGN_OR_RETURN(int64_t max_mb, config.get(kMaxMB));
  VIX_ASSIGN_OR_RETURN(int64_t threads, config.get(kThreads));
  VIX_ASSIGN_OR_RETURN(ReadaheadOptions opt, readahead_options(config, dev->transport_name()));
  std::shared_ptr<CacheBudget> budget = CacheBudget::global(static_cast<size_t>(threads));
  budget->set_limit(static_cast<uint64_t>(max_mb) << 20);
  auto wrapped = std::make_unique<ReadaheadDevice>(std::move(dev), opt, std::move(budget));
  if (cache) *cache = wrapped.get();
  return std::unique_ptr<BlockDevice>(std::move(wrapped));
}

void ReadaheadStats::add(const ReadaheadStats& o) {
  chunk_bytes = o.chunk_bytes;
  reads += o.reads;
  bytes_read += o.bytes_read;
  hits += o.hits;
  misses += o.misses;
  prefetched_bytes += o.prefetched_bytes;
  wasted_bytes += o.wasted_bytes;
  transport_requests += o.transport_requests;
  transport_bytes += o.transport_bytes;
  writes += o.writes;
  errors += o.errors;
  prefetch_errors += o.prefetch_errors;
  bypass_reads += o.bypass_reads;
  released_behind += o.released_behind;
}

}  // namespace vix
