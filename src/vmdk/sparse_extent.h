// Hosted sparse extents (KDMV): monolithicSparse, twoGbMaxExtentSparse pieces, streamOptimized
// (zlib grains, markers, footer with GD_AT_END) and delta links; COWD (ESX sparse) extents use
// the same machinery with 4096-entry tables. See docs/reference/vmdk-format.md §3-§8, §12.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "vmdk/extent.h"

namespace vix::vmdk {

inline constexpr uint32_t kSparseMagic = 0x564D444B;  // "KDMV"
inline constexpr uint32_t kCowdMagic = 0x44574F43;    // "COWD"
inline constexpr uint64_t kGdAtEnd = ~uint64_t{0};

struct SparseHeader {
  uint32_t version = 0;
  uint32_t flags = 0;
  uint64_t capacity = 0;
  uint64_t grain_size = 0;
  uint64_t desc_offset = 0;
  uint64_t desc_size = 0;
  uint32_t num_gtes = 0;
  uint64_t rgd_offset = 0;
  uint64_t gd_offset = 0;
  uint64_t overhead = 0;
  uint16_t compress_algorithm = 0;

  static constexpr uint32_t kFlagRgd = 1u << 1;
  static constexpr uint32_t kFlagZeroGrain = 1u << 2;
  static constexpr uint32_t kFlagMarkers = 1u << 17;
};

// Decodes the 512-byte header; checks only the magic.
SparseHeader decode_sparse_header(const uint8_t* sector);

class SparseExtent final : public Extent {
 public:
  // Validates the header (and the footer of a GD_AT_END stream) against the file's size and
  // loads the grain directory. Errors name the file and the field.
  static Result<std::unique_ptr<SparseExtent>> open(std::unique_ptr<ByteSource> src);

  const SparseHeader& header() const { return h_; }
  bool compressed() const { return h_.compress_algorithm == 1; }

  // The embedded descriptor (header's descriptor area up to the first NUL); empty if none.
  Result<std::string> read_embedded_descriptor();
  // Replaces the embedded descriptor, padding the area with NULs; fails if text does not fit.
  Result<void> write_embedded_descriptor(std::string_view text);

  uint64_t sectors() const override { return h_.capacity; }
  Result<void> map(uint64_t sector, uint64_t count, std::vector<Run>& out) override;
  Result<void> read_run(const Run& run, uint8_t* buf) override;
  Result<bool> write_needs_below(uint64_t sector, uint64_t count) override;
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf,
                     const BelowReader& below) override;
  Result<void> flush() override;
  Result<void> check_writable() const override;
  ByteSource* source() override { return src_.get(); }

 private:
  using Table = std::vector<uint32_t>;

  explicit SparseExtent(std::unique_ptr<ByteSource> src) : src_(std::move(src)) {}
  Result<void> init();
  Result<void> init_cowd(const uint8_t* sector);
  Result<void> load_directory(uint64_t offset, uint64_t entries, const char* what,
                              std::vector<uint32_t>& out);
  Result<void> check_table_overlap() const;
  Result<std::shared_ptr<Table>> grain_table(uint64_t gd_index);
  Result<std::shared_ptr<Table>> allocate_grain_table(uint64_t gd_index);
  Result<void> check_gte(uint32_t gte, uint64_t grain) const;
  Result<std::shared_ptr<const std::vector<uint8_t>>> inflate_grain(uint64_t host, uint64_t grain);
  Error corrupt(const std::string& what) const;

  std::unique_ptr<ByteSource> src_;
  SparseHeader h_;
  bool gd_at_end_ = false;
  uint64_t grain_bytes_ = 0;
  uint64_t gt_cover_ = 0;     // sectors covered by one grain table
  uint64_t gt_sectors_ = 0;   // sectors one grain table occupies on disk
  uint64_t grain_floor_ = 1;  // grain pointers below this sector point into metadata
  std::atomic<uint64_t> file_bytes_{0};
  std::vector<uint32_t> gd_;
  std::vector<uint32_t> rgd_;  // loaded only when the file is writable and has one
  uint64_t next_sector_ = 0;   // where the next grain (or grain table) is appended

  // Grain-table LRU: bounded, shared by concurrent readers.
  std::mutex cache_mu_;
  std::list<uint64_t> lru_;  // most recent first
  struct CacheEntry {
    std::shared_ptr<Table> table;
    std::list<uint64_t>::iterator pos;
  };
  std::unordered_map<uint64_t, CacheEntry> cache_;

  // Last inflated grains of a compressed extent, so small sequential reads inflate once.
  std::mutex inflate_mu_;
  std::vector<std::pair<uint64_t, std::shared_ptr<const std::vector<uint8_t>>>> inflated_;
};

}  // namespace vix::vmdk
