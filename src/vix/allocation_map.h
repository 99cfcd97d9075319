// AllocationMap: which sectors of a disk may hold data, as sorted, merged extents. Learned once
// from the device (BlockDevice::allocated, asked in windows so a huge sparse disk is mapped in
// pieces) and grown by this process's own writes, so it errs towards data: SEEK_DATA landing on
// zeros costs a reader a copy, a hole over data would lose it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/block_device.h"
#include "common/result.h"

namespace vix {

class AllocationMap {
 public:
  // The map of dev's first capacity_sectors sectors.
  static Result<AllocationMap> learn(BlockDevice& dev, uint64_t capacity_sectors);
  // Everything allocated: what a map that cannot be learned must say (the safe side for cp/tar).
  static AllocationMap everything(uint64_t capacity_sectors);

  // Adds [start, start+count), widened to whole 64 KiB grains (VMware's and qemu's default grain)
  // and clipped to the capacity.
  void mark(uint64_t start, uint64_t count);

  uint64_t allocated_sectors() const { return allocated_sectors_; }
  const std::vector<SectorExtent>& extents() const { return extents_; }

  // lseek(2) over a file of size_bytes: the first data at or after offset (nullopt: none, ENXIO)
  // and the first hole at or after offset (the end of the file counts as one). offset must be
  // below size_bytes.
  std::optional<uint64_t> next_data(uint64_t offset, uint64_t size_bytes) const;
  uint64_t next_hole(uint64_t offset, uint64_t size_bytes) const;

 private:
  explicit AllocationMap(uint64_t capacity_sectors) : capacity_sectors_(capacity_sectors) {}
  // First extent that ends after sector.
  std::vector<SectorExtent>::const_iterator extent_after(uint64_t sector) const;

  uint64_t capacity_sectors_;
  std::vector<SectorExtent> extents_;  // sorted, merged, non-empty
  uint64_t allocated_sectors_ = 0;
};

}  // namespace vix
