#include "fs/stats.h"

#include <map>

#include "common/json.h"
#include "fs/disk_file.h"

namespace vixfs {

namespace {

// The transport's link counters besides reconnects (always shown, 0 without a link).
std::string link_json(const vix::IoSnapshot& io) {
  std::string out;
  for (const auto& [name, count] : io.link) {
    if (name != "reconnects") out += ", " + vix::json_string(name) + ": " + std::to_string(count);
  }
  return out;
}

std::string io_json(const vix::IoSnapshot& io) {
  return "{\"readRequests\": " + std::to_string(io.read_requests) +
         ", \"readBytes\": " + std::to_string(io.read_bytes) +
         ", \"writeRequests\": " + std::to_string(io.write_requests) +
         ", \"writeBytes\": " + std::to_string(io.write_bytes) +
         ", \"flushes\": " + std::to_string(io.flushes) +
         ", \"unmaps\": " + std::to_string(io.unmaps) +
         ", \"unmapBytes\": " + std::to_string(io.unmap_bytes) +
         ", \"errors\": " + std::to_string(io.errors) +
         ", \"reconnects\": " + std::to_string(io.link_counter("reconnects")) + link_json(io) +
         ", \"readLatencyUs\": {\"p50\": " + std::to_string(io.p50_us) +
         ", \"p90\": " + std::to_string(io.p90_us) + ", \"p99\": " + std::to_string(io.p99_us) +
         ", \"max\": " + std::to_string(io.max_us) + "}}";
}

std::string cache_json(bool cached, const vix::ReadaheadStats& c) {
  if (!cached) return "null";
  return "{\"chunkBytes\": " + std::to_string(c.chunk_bytes) +
         ", \"reads\": " + std::to_string(c.reads) + ", \"hits\": " + std::to_string(c.hits) +
         ", \"misses\": " + std::to_string(c.misses) +
         ", \"prefetchedBytes\": " + std::to_string(c.prefetched_bytes) +
         ", \"wastedBytes\": " + std::to_string(c.wasted_bytes) +
         ", \"transportRequests\": " + std::to_string(c.transport_requests) +
         ", \"errors\": " + std::to_string(c.errors) +
         ", \"bypassReads\": " + std::to_string(c.bypass_reads) +
         ", \"releasedBehind\": " + std::to_string(c.released_behind) + "}";
}

struct Totals {
  uint64_t reads = 0, bytes = 0, errors = 0, writes = 0, bytes_written = 0, flushes = 0;
  std::map<std::string, vix::IoSnapshot> by_transport;
};

}  // namespace

std::string render_stats(const Tree& tree) {
  Totals totals;
  std::string disks;
  bool any_cached = false;
  for (const auto& disk : tree.disks()) {
    const DiskFile::Stats s = disk->stats();
    any_cached = any_cached || s.cached;
    totals.reads += s.reads;
    totals.bytes += s.bytes;
    totals.errors += s.errors;
    totals.writes += s.writes;
    totals.bytes_written += s.bytes_written;
    totals.flushes += s.flushes;
    if (!s.transport.empty()) totals.by_transport[s.transport].add(s.transport_io);
    disks += disks.empty() ? "\n" : ",\n";
    disks += "    " + vix::json_string(disk->name()) +
             ": {\"transport\": " + (s.transport.empty() ? "null" : vix::json_string(s.transport)) +
             ", \"reads\": " + std::to_string(s.reads) + ", \"bytes\": " + std::to_string(s.bytes) +
             ", \"errors\": " + std::to_string(s.errors) +
             ", \"mappedBytes\": " + std::to_string(s.mapped_bytes) +
             ", \"transportIo\": " + io_json(s.transport_io) +
             ", \"cache\": " + cache_json(s.cached, s.cache) +
             ", \"writes\": " + std::to_string(s.writes) +
             ", \"bytesWritten\": " + std::to_string(s.bytes_written) +
             ", \"flushes\": " + std::to_string(s.flushes) + "}";
  }
  std::string modes;
  for (const auto& [mode, io] : totals.by_transport) {
    modes += modes.empty() ? "" : ", ";
    modes += vix::json_string(mode) + ": " + io_json(io);
  }
  std::string memory = "null";
  if (any_cached) {  // CacheBudget::global() starts the prefetch workers: only when in use
    const auto budget = vix::CacheBudget::global();
    memory = "{\"usedBytes\": " + std::to_string(budget->used()) +
             ", \"peakBytes\": " + std::to_string(budget->peak()) +
             ", \"limitBytes\": " + std::to_string(budget->limit()) + "}";
  }
  return "{\n  \"mount\": {\"reads\": " + std::to_string(totals.reads) +
         ", \"bytes\": " + std::to_string(totals.bytes) +
         ", \"errors\": " + std::to_string(totals.errors) +
         ", \"writes\": " + std::to_string(totals.writes) +
         ", \"bytesWritten\": " + std::to_string(totals.bytes_written) +
         ", \"flushes\": " + std::to_string(totals.flushes) + ", \"cacheMemory\": " + memory +
         ", \"transports\": {" + modes + "}},\n  \"disks\": {" + disks +
         (disks.empty() ? "}\n}\n" : "\n  }\n}\n");
}

}  // namespace vixfs
