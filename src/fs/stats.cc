#include "fs/stats.h"

#include <map>

#include "common/json.h"
#include "fs/disk_file.h"

namespace vixfs {

namespace {

std::string io_json(const vix::IoSnapshot& io) {
  return "{\"readRequests\": " + std::to_string(io.read_requests) +
         ", \"readBytes\": " + std::to_string(io.read_bytes) +
         ", \"writeRequests\": " + std::to_string(io.write_requests) +
         ", \"writeBytes\": " + std::to_string(io.write_bytes) +
         ", \"flushes\": " + std::to_string(io.flushes) +
         ", \"errors\": " + std::to_string(io.errors) +
         ", \"readLatencyUs\": {\"p50\": " + std::to_string(io.p50_us) +
         ", \"p90\": " + std::to_string(io.p90_us) + ", \"p99\": " + std::to_string(io.p99_us) +
         ", \"max\": " + std::to_string(io.max_us) + "}}";
}

struct Totals {
  uint64_t reads = 0, bytes = 0, errors = 0;
  std::map<std::string, vix::IoSnapshot> by_transport;
};

}  // namespace

std::string render_stats(const Tree& tree) {
  Totals totals;
  std::string disks;
  for (const auto& disk : tree.disks()) {
    const DiskFile::Stats s = disk->stats();
    totals.reads += s.reads;
    totals.bytes += s.bytes;
    totals.errors += s.errors;
    if (!s.transport.empty()) totals.by_transport[s.transport].add(s.transport_io);
    disks += disks.empty() ? "\n" : ",\n";
    disks += "    " + vix::json_string(disk->name()) +
             ": {\"transport\": " + (s.transport.empty() ? "null" : vix::json_string(s.transport)) +
             ", \"reads\": " + std::to_string(s.reads) + ", \"bytes\": " + std::to_string(s.bytes) +
             ", \"errors\": " + std::to_string(s.errors) +
             ", \"transportIo\": " + io_json(s.transport_io) + "}";
  }
  std::string modes;
  for (const auto& [mode, io] : totals.by_transport) {
    modes += modes.empty() ? "" : ", ";
    modes += vix::json_string(mode) + ": " + io_json(io);
  }
  return "{\n  \"mount\": {\"reads\": " + std::to_string(totals.reads) +
         ", \"bytes\": " + std::to_string(totals.bytes) +
         ", \"errors\": " + std::to_string(totals.errors) + ", \"transports\": {" + modes +
         "}},\n  \"disks\": {" + disks + (disks.empty() ? "}\n}\n" : "\n  }\n}\n");
}

}  // namespace vixfs
