#include "vmdk/sparse_layout.h"

namespace vix::vmdk {

namespace {
uint64_t div_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}
}  // namespace

KdmvCreateLayout kdmv_create_layout(uint64_t capacity) {
  KdmvCreateLayout l;
  l.capacity = capacity;
  const uint64_t grains = div_up(capacity, l.grain_size);
  l.gt_count = div_up(grains, l.gtes_per_gt);
  l.gt_sectors = div_up(uint64_t{l.gtes_per_gt} * 4, 512);
  l.gd_sectors = div_up(l.gt_count * 4, 512);
  l.rgd_offset = 21;
  l.gd_offset = l.rgd_offset + l.gd_sectors + l.gt_sectors * l.gt_count;
  l.overhead =
      div_up(l.gd_offset + l.gd_sectors + l.gt_sectors * l.gt_count, l.grain_size) * l.grain_size;
  return l;
}

std::array<uint8_t, 512> encode_kdmv_create_header(const KdmvCreateLayout& l, KdmvKind kind) {
  std::array<uint8_t, 512> h{};
  const bool stream = kind == KdmvKind::kStreamOptimized;
  store_le(&h[0], 0x564D444B, 4);  // "KDMV"
  store_le(&h[4], stream ? 3 : 1, 4);
  store_le(&h[8], stream ? 0x30003 : 0x3, 4);
  store_le(&h[12], l.capacity, 8);
  store_le(&h[20], l.grain_size, 8);
  store_le(&h[28], 1, 8);   // descriptorOffset
  store_le(&h[36], 20, 8);  // descriptorSize
  store_le(&h[44], l.gtes_per_gt, 4);
  store_le(&h[48], l.rgd_offset, 8);
  store_le(&h[56], l.gd_offset, 8);
  store_le(&h[64], l.overhead, 8);
  h[72] = 0;  // uncleanShutdown
  h[73] = '\n';
  h[74] = ' ';
  h[75] = '\r';
  h[76] = '\n';
  store_le(&h[77], stream ? 1 : 0, 2);
  return h;
}

}  // namespace vix::vmdk
