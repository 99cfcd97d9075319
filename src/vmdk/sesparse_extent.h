// SEsparse extents (ESXi 6.5+ VMFS6 snapshot deltas, createType "seSparse", extent type
// SESPARSE), read-only, interpreted as qemu reads them: docs/reference/vmdk-format.md §9.
// Writes are refused (VIX_E_NOT_SUPPORTED): the journal, free bitmap and backmap a writer would
// have to keep consistent are undocumented.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "vmdk/extent.h"

namespace vix::vmdk {

inline constexpr uint64_t kSeSparseConstMagic = 0xcafebabe;
inline constexpr uint64_t kSeSparseVolatileMagic = 0xcafecafe;
inline constexpr uint64_t kSeSparseVersion = 0x0000000200000001;

// The fields of the 512-byte const header (26 u64 LE, then zeros), in file order.
struct SeSparseConstHeader {
  uint64_t magic, version, capacity, grain_size, grain_table_size, flags;
  uint64_t reserved[4];
  uint64_t volatile_header_offset, volatile_header_size;
  uint64_t journal_header_offset, journal_header_size;
  uint64_t journal_offset, journal_size;
  uint64_t grain_dir_offset, grain_dir_size;
  uint64_t grain_tables_offset, grain_tables_size;
  uint64_t free_bitmap_offset, free_bitmap_size;
  uint64_t backmap_offset, backmap_size;
  uint64_t grains_offset, grains_size;
};
static_assert(sizeof(SeSparseConstHeader) == 26 * 8);

// Byte offsets of the volatile header's fields (512 bytes: 4 u64 LE, then zeros).
inline constexpr size_t kSeSparseVolatileMagicField = 0, kSeSparseFreeGtField = 8,
                        kSeSparseNextTxnField = 16, kSeSparseReplayJournalField = 24;

// GD entries: 0, or this tag in the top 32 bits over a grain-table index.
inline constexpr uint64_t kSeSparseGdTag = 0x10000000;
// GTE kinds (the top nibble).
inline constexpr uint64_t kSeSparseUnallocated = 0, kSeSparseUnmapped = 1, kSeSparseZero = 2,
                          kSeSparseAllocated = 3;
// Fixed by the format (qemu refuses anything else): 4 KiB grains, 4096-entry grain tables.
inline constexpr uint64_t kSeSparseGrainSectors = 8, kSeSparseGtSectors = 64,
                          kSeSparseGtEntries = kSeSparseGtSectors * 512 / 8;

// The cluster number an allocated GTE holds, and the GTE that holds a cluster (the writer's
// inverse): the low 12 bits of the cluster sit in bits 48..59, the rest in bits 0..47.
inline uint64_t sesparse_gte_cluster(uint64_t gte) {
  return ((gte >> 48) & 0xfff) | ((gte & 0xffffffffffffULL) << 12);
}
inline uint64_t sesparse_allocated_gte(uint64_t cluster) {
  return kSeSparseAllocated << 60 | (cluster & 0xfff) << 48 | (cluster >> 12);
}

class SeSparseExtent final : public Extent {
 public:
  // Checks the const and volatile headers against the format and the file's size and loads the
  // grain directory. Errors (VIX_E_DISK_INVAL) name the file and the field.
  static Result<std::unique_ptr<SeSparseExtent>> open(std::unique_ptr<ByteSource> src);

  uint64_t sectors() const override { return h_.capacity; }
  Result<void> map(uint64_t sector, uint64_t count, std::vector<Run>& out) override;
  Result<void> read_run(const Run& run, uint8_t* buf) override;
  Result<bool> write_needs_below(uint64_t, uint64_t) override { return false; }
  Result<void> write(uint64_t, uint64_t, const uint8_t*, const BelowReader&) override {
    return check_writable();
  }
  Result<void> flush() override { return ok(); }
  Result<void> check_writable() const override;
  ByteSource* source() override { return src_.get(); }

 private:
  using Table = std::vector<uint64_t>;

  explicit SeSparseExtent(std::unique_ptr<ByteSource> src) : src_(std::move(src)) {}
  Result<void> init();
  Result<void> check_volatile_header();
  Result<std::shared_ptr<const Table>> grain_table(uint64_t gd_index);
  Error corrupt(const std::string& what) const;

  std::unique_ptr<ByteSource> src_;
  SeSparseConstHeader h_{};
  uint64_t file_bytes_ = 0;
  std::vector<uint64_t> gd_;  // the entries that cover the capacity

  // Grain tables (32 KiB each) read so far, bounded; shared by concurrent readers.
  std::mutex cache_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<const Table>> cache_;
};

}  // namespace vix::vmdk
