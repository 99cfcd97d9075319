#include "vix/allocation_map.h"

#include <algorithm>

namespace vix {

namespace {

// Largest window asked of the device at once.
constexpr uint64_t kWindowSectors = uint64_t{1} << 31;  // 1 TiB
// Written ranges are recorded in whole grains of this many sectors (64 KiB).
constexpr uint64_t kGrainSectors = 128;

}  // namespace

Result<AllocationMap> AllocationMap::learn(BlockDevice& dev, uint64_t capacity_sectors) {
  AllocationMap map(capacity_sectors);
  for (uint64_t start = 0; start < capacity_sectors; start += kWindowSectors) {
    const uint64_t count = std::min(kWindowSectors, capacity_sectors - start);
    auto extents = dev.allocated(start, count);
    if (!extents.ok()) {
      return fail(extents.error().code, "allocation map at offset " +
                                            std::to_string(start * kSectorSize) + ": " +
                                            extents.error().message);
    }
    // Devices promise sorted extents; a buggy one must not corrupt the merge.
    std::sort(extents->begin(), extents->end(),
              [](const SectorExtent& a, const SectorExtent& b) { return a.start < b.start; });
    for (const SectorExtent& e : *extents) {
      if (e.count == 0) continue;
      std::vector<SectorExtent>& out = map.extents_;
      if (!out.empty() && e.start <= out.back().start + out.back().count) {
        const uint64_t end = std::max(out.back().start + out.back().count, e.start + e.count);
        out.back().count = end - out.back().start;
      } else {
        out.push_back(e);
      }
    }
  }
  for (const SectorExtent& e : map.extents_) map.allocated_sectors_ += e.count;
  return map;
}

AllocationMap AllocationMap::everything(uint64_t capacity_sectors) {
  AllocationMap map(capacity_sectors);
  if (capacity_sectors > 0) map.extents_.push_back({0, capacity_sectors});
  map.allocated_sectors_ = capacity_sectors;
  return map;
}

void AllocationMap::mark(uint64_t start, uint64_t count) {
  if (count == 0) return;
  uint64_t s = start / kGrainSectors * kGrainSectors;
  uint64_t t = std::min(capacity_sectors_,
                        (start + count + kGrainSectors - 1) / kGrainSectors * kGrainSectors);
  if (s >= t) return;
  // First extent that ends at or after s: it and the ones up to t merge with [s, t).
  auto lo =
      std::lower_bound(extents_.begin(), extents_.end(), s,
                       [](const SectorExtent& e, uint64_t v) { return e.start + e.count < v; });
  auto hi = lo;
  uint64_t removed = 0;
  for (; hi != extents_.end() && hi->start <= t; ++hi) {
    s = std::min(s, hi->start);
    t = std::max(t, hi->start + hi->count);
    removed += hi->count;
  }
  lo = extents_.erase(lo, hi);
  extents_.insert(lo, SectorExtent{s, t - s});
  allocated_sectors_ += (t - s) - removed;
}

std::vector<SectorExtent>::const_iterator AllocationMap::extent_after(uint64_t sector) const {
  return std::upper_bound(extents_.begin(), extents_.end(), sector,
                          [](uint64_t v, const SectorExtent& e) { return v < e.start + e.count; });
}

std::optional<uint64_t> AllocationMap::next_data(uint64_t offset, uint64_t size_bytes) const {
  const uint64_t sector = offset / kSectorSize;
  auto it = extent_after(sector);
  if (it == extents_.end()) return std::nullopt;
  if (it->start <= sector) return offset;
  return std::min(size_bytes, it->start * kSectorSize);
}

uint64_t AllocationMap::next_hole(uint64_t offset, uint64_t size_bytes) const {
  const uint64_t sector = offset / kSectorSize;
  auto it = extent_after(sector);
  if (it == extents_.end() || it->start > sector) return offset;
  return std::min(size_bytes, (it->start + it->count) * kSectorSize);
}

}  // namespace vix
