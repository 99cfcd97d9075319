// vixdisk map: the disk's allocated extents, merged, in bytes and sectors.
#include <cerrno>
#include <cstdio>
#include <string>

#include "tools/cli.h"

namespace vixdisk {

int cmd_map(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(args, {{"json", false, 0}}, &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 1) return usage_error("map needs exactly one DISK");
  const std::string& path = parsed->positional[0];

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  if (int rc = session.open(path, true); rc != kExitOk) return rc;
  vix::Disk& disk = session.disk();
  const uint64_t capacity = disk.info().capacity_sectors;
  const bool json = parsed->has("json");

  AllocationCursor cursor(disk.device(), capacity);
  uint64_t from = 0, allocated = 0;
  bool first = true;
  if (json) {
    printf("{\n  \"capacity_bytes\": %llu,\n  \"extents\": [",
           static_cast<unsigned long long>(capacity * vix::kSectorSize));
  } else {
    printf("%20s %20s %16s %16s\n", "start (bytes)", "length (bytes)", "start (sector)", "sectors");
  }
  for (;;) {
    auto next = cursor.next(from);
    if (!next.ok()) return vix_error("allocation map of " + path, next.error());
    if (!*next) break;
    const vix::SectorExtent e = **next;
    allocated += e.count;
    from = e.start + e.count;
    const auto b = static_cast<unsigned long long>(e.start * vix::kSectorSize);
    const auto l = static_cast<unsigned long long>(e.count * vix::kSectorSize);
    const auto s = static_cast<unsigned long long>(e.start);
    const auto c = static_cast<unsigned long long>(e.count);
    if (json) {
      printf(
          "%s\n    {\"start\": %llu, \"length\": %llu, \"start_sector\": %llu, \"sectors\": %llu}",
          first ? "" : ",", b, l, s, c);
    } else {
      printf("%20llu %20llu %16llu %16llu\n", b, l, s, c);
    }
    first = false;
  }
  const auto total = static_cast<unsigned long long>(allocated * vix::kSectorSize);
  if (json) {
    printf("%s],\n  \"allocated_bytes\": %llu\n}\n", first ? "" : "\n  ", total);
  } else {
    printf("allocated: %llu of %llu bytes (%.1f%%)\n", total,
           static_cast<unsigned long long>(capacity * vix::kSectorSize),
           capacity ? 100.0 * static_cast<double>(allocated) / static_cast<double>(capacity) : 0.0);
  }
  if (fflush(stdout) != 0) return io_error("write stdout", errno);
  return kExitOk;
}

}  // namespace vixdisk
