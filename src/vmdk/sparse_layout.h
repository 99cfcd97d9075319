// What `qemu-img create` writes for a hosted sparse (KDMV) extent: the layout arithmetic of
// docs/reference/vmdk-format.md §4.2 and the 512-byte header encoding of §3. Used by create; the
// reader lives in sparse_extent.* and does not depend on this.
#pragma once

#include <array>
#include <cstdint>

namespace vix::vmdk {

struct KdmvCreateLayout {
  uint64_t capacity = 0;  // sectors
  uint64_t grain_size = 128;
  uint32_t gtes_per_gt = 512;
  uint64_t gt_count = 0;    // = GD entries
  uint64_t gd_sectors = 0;  // sectors of one GD (and of the RGD)
  uint64_t gt_sectors = 4;  // sectors of one GT
  uint64_t rgd_offset = 21;
  uint64_t gd_offset = 0;
  uint64_t overhead = 0;  // first grain sector; the file's initial size in sectors
};

// qemu's layout for `capacity` sectors: descriptor area at sectors 1..20, RGD + its GTs, GD + its
// GTs, rounded up to a grain.
KdmvCreateLayout kdmv_create_layout(uint64_t capacity);

enum class KdmvKind { kSparse, kStreamOptimized };

// Sector 0 exactly as qemu-img create writes it (monolithicSparse: version 1, flags 0x3;
// streamOptimized: version 3, flags 0x30003, compressAlgorithm 1).
std::array<uint8_t, 512> encode_kdmv_create_header(const KdmvCreateLayout& layout, KdmvKind kind);

// Little-endian field access for header bytes (u16/u32/u64 at a byte offset).
inline uint64_t load_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline void store_le(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace vix::vmdk
