#include "vmdk/sesparse_extent.h"

#include <algorithm>
#include <cstring>

#include "vmdk/sparse_layout.h"

namespace vix::vmdk {

namespace {

constexpr uint64_t kMaxSectors = uint64_t{1} << 54;  // bytes stay far below 2^63
constexpr size_t kGtCacheEntries = 256;              // 8 MiB of 32 KiB tables
constexpr uint64_t kGtCover = kSeSparseGtEntries * kSeSparseGrainSectors;  // 16 MiB

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t div_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

}  // namespace

Error SeSparseExtent::corrupt(const std::string& what) const {
  return fail(VIX_E_DISK_NEEDSREPAIR, src_->name() + ": SEsparse " + what);
}

Result<std::unique_ptr<SeSparseExtent>> SeSparseExtent::open(std::unique_ptr<ByteSource> src) {
  std::unique_ptr<SeSparseExtent> e(new SeSparseExtent(std::move(src)));
  VIX_TRY(e->init());
  return e;
}

Result<void> SeSparseExtent::init() {
  auto inval = [&](const std::string& what) {
    return fail(VIX_E_DISK_INVAL, src_->name() + ": SEsparse const header: " + what);
  };
  VIX_ASSIGN_OR_RETURN(file_bytes_, src_->size());
  if (file_bytes_ < 512) return inval("file is shorter than the 512-byte const header");
  uint8_t sec[512];
  VIX_TRY(src_->read_exact(sec, sizeof sec, 0, "SEsparse const header"));
  uint64_t fields[sizeof h_ / 8];  // the struct is 26 u64 in file order, without padding
  for (size_t i = 0; i < sizeof h_ / 8; ++i) fields[i] = load_le(sec + i * 8, 8);
  std::memcpy(&h_, fields, sizeof h_);

  // The checks qemu makes (§9): anything else is a format we do not know.
  if (h_.magic != kSeSparseConstMagic)
    return inval("magic " + hex(h_.magic) + " is not " + hex(kSeSparseConstMagic));
  if (h_.version != kSeSparseVersion)
    return inval("version " + hex(h_.version) + " is not " + hex(kSeSparseVersion));
  if (h_.grain_size != kSeSparseGrainSectors)
    return inval("grainSize " + std::to_string(h_.grain_size) + " is not 8 sectors");
  if (h_.grain_table_size != kSeSparseGtSectors)
    return inval("grainTableSize " + std::to_string(h_.grain_table_size) + " is not 64 sectors");
  if (h_.flags != 0) return inval("flags " + hex(h_.flags) + " are not 0");
  for (int i = 0; i < 4; ++i)
    if (h_.reserved[i] != 0) return inval("reserved" + std::to_string(i + 1) + " is not 0");
  if (h_.capacity > kMaxSectors)
    return inval("capacity " + std::to_string(h_.capacity) + " sectors is absurd");

  const uint64_t file_sectors = file_bytes_ / 512;
  // Each region we read must start after the const header and inside the file; the journal,
  // free bitmap and backmap are not read (as in qemu), so their fields are not judged.
  auto region = [&](const char* name, uint64_t offset) -> Result<void> {
    if (offset == 0 || offset >= file_sectors)
      return inval(std::string(name) + " " + std::to_string(offset) + " lies outside the file of " +
                   std::to_string(file_sectors) + " sectors");
    return ok();
  };
  VIX_TRY(region("volatileHeaderOffset", h_.volatile_header_offset));
  VIX_TRY(region("grainDirOffset", h_.grain_dir_offset));
  VIX_TRY(region("grainTablesOffset", h_.grain_tables_offset));
  if (h_.grains_offset == 0 || h_.grains_offset > kMaxSectors)
    return inval("grainsOffset " + std::to_string(h_.grains_offset) + " is invalid");
  VIX_TRY(check_volatile_header());

  // The directory must cover the capacity; only the entries that do are loaded.
  const uint64_t need = div_up(h_.capacity, kGtCover);
  if (h_.grain_dir_size > kMaxSectors || h_.grain_dir_size * 512 / 8 < need)
    return inval("grainDirSize " + std::to_string(h_.grain_dir_size) +
                 " sectors holds fewer than " + std::to_string(need) +
                 " entries, which the capacity needs");
  if (h_.grain_dir_offset * 512 + need * 8 > file_bytes_)
    return inval("grainDirOffset " + std::to_string(h_.grain_dir_offset) + ": the " +
                 std::to_string(need) + "-entry grain directory runs past the end of the file");
  std::vector<uint8_t> raw(need * 8);  // bounded by the file's size, checked above
  VIX_TRY(src_->read_exact(raw.data(), raw.size(), h_.grain_dir_offset * 512, "grain directory"));
  gd_.resize(need);
  for (uint64_t i = 0; i < need; ++i) gd_[i] = load_le(&raw[i * 8], 8);
  return ok();
}

// A journal that still has to be replayed means the tables on disk are not the disk's content;
// qemu refuses such an image and so do we (ESXi replays it when it opens the disk).
Result<void> SeSparseExtent::check_volatile_header() {
  uint8_t sec[512];
  const uint64_t off = h_.volatile_header_offset * 512;
  if (off + sizeof sec > file_bytes_)
    return fail(VIX_E_DISK_INVAL, src_->name() + ": SEsparse volatileHeaderOffset " +
                                      std::to_string(h_.volatile_header_offset) +
                                      ": the volatile header runs past the end of the file");
  VIX_TRY(src_->read_exact(sec, sizeof sec, off, "SEsparse volatile header"));
  const uint64_t magic = load_le(sec + kSeSparseVolatileMagicField, 8);
  if (magic != kSeSparseVolatileMagic)
    return fail(VIX_E_DISK_INVAL, src_->name() + ": SEsparse volatile header: magic " + hex(magic) +
                                      " is not " + hex(kSeSparseVolatileMagic));
  const uint64_t replay = load_le(sec + kSeSparseReplayJournalField, 8);
  if (replay != 0)
    return fail(VIX_E_DISK_NEEDSREPAIR,
                src_->name() + ": SEsparse volatile header: replayJournal is " +
                    std::to_string(replay) +
                    " (the image is dirty: its journal must be replayed by ESXi first)");
  return ok();
}

Result<std::shared_ptr<const SeSparseExtent::Table>> SeSparseExtent::grain_table(uint64_t gdi) {
  {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(gdi);
    if (it != cache_.end()) return it->second;
  }
  const uint64_t entry = gd_[gdi];
  if (entry >> 32 != kSeSparseGdTag)
    return corrupt("grain directory entry " + std::to_string(gdi) + " (" + hex(entry) +
                   ") does not carry the tag 0x10000000 in its top 32 bits");
  const uint64_t index = entry & 0xffffffff;
  const uint64_t sector = h_.grain_tables_offset + index * kSeSparseGtSectors;
  if (h_.grain_tables_offset > kMaxSectors || (sector + kSeSparseGtSectors) * 512 > file_bytes_)
    return corrupt("grain directory entry " + std::to_string(gdi) + ": grain table " +
                   std::to_string(index) + " (grainTablesOffset " +
                   std::to_string(h_.grain_tables_offset) + ") lies past the end of the file");
  std::vector<uint8_t> raw(kSeSparseGtEntries * 8);
  VIX_TRY(src_->read_exact(raw.data(), raw.size(), sector * 512, "SEsparse grain table"));
  auto table = std::make_shared<Table>(kSeSparseGtEntries);
  for (uint64_t i = 0; i < kSeSparseGtEntries; ++i) (*table)[i] = load_le(&raw[i * 8], 8);

  std::lock_guard lock(cache_mu_);
  if (cache_.size() >= kGtCacheEntries) cache_.erase(cache_.begin());
  return cache_.emplace(gdi, std::move(table)).first->second;
}

Result<void> SeSparseExtent::map(uint64_t sector, uint64_t count, std::vector<Run>& out) {
  if (sector > h_.capacity || count > h_.capacity - sector)
    return fail(VIX_E_DISK_OUTOFRANGE, src_->name() + ": request beyond the extent's capacity");
  auto append = [&](uint64_t s, uint64_t n, RunKind kind, uint64_t host) {
    if (!out.empty()) {
      Run& last = out.back();
      if (last.kind == kind && last.sector + last.count == s &&
          (kind != RunKind::kData || last.host + last.count * 512 == host)) {
        last.count += n;
        return;
      }
    }
    out.push_back(Run{s, n, kind, host});
  };
  std::shared_ptr<const Table> gt;
  uint64_t gt_index = ~uint64_t{0};
  while (count > 0) {
    const uint64_t gdi = sector / kGtCover;
    if (gd_[gdi] == 0) {  // a whole unallocated table: the parent's bytes
      uint64_t n = std::min(count, (gdi + 1) * kGtCover - sector);
      append(sector, n, RunKind::kHole, 0);
      sector += n, count -= n;
      continue;
    }
    if (gdi != gt_index) {
      VIX_ASSIGN_OR_RETURN(gt, grain_table(gdi));
      gt_index = gdi;
    }
    const uint64_t grain = sector / kSeSparseGrainSectors;
    const uint64_t in_grain = sector % kSeSparseGrainSectors;
    const uint64_t n = std::min(count, kSeSparseGrainSectors - in_grain);
    const uint64_t gte = (*gt)[grain % kSeSparseGtEntries];
    auto bad = [&](const std::string& why) {
      return corrupt("grain table entry for grain " + std::to_string(grain) + " (" + hex(gte) +
                     ") " + why);
    };
    switch (gte >> 60) {
      case kSeSparseUnallocated:
        if (gte != 0) return bad("is unallocated but not 0");
        append(sector, n, RunKind::kHole, 0);
        break;
      case kSeSparseUnmapped:  // SCSI UNMAP: zeros, never the parent's bytes
      case kSeSparseZero:
        append(sector, n, RunKind::kZero, 0);
        break;
      case kSeSparseAllocated: {
        const uint64_t cluster = sesparse_gte_cluster(gte);
        const uint64_t data = h_.grains_offset + cluster * kSeSparseGrainSectors;
        if (cluster > kMaxSectors / 8 || (data + kSeSparseGrainSectors) * 512 > file_bytes_)
          return bad("points past the end of the file (grainsOffset " +
                     std::to_string(h_.grains_offset) + ", cluster " + std::to_string(cluster) +
                     ")");
        append(sector, n, RunKind::kData, (data + in_grain) * 512);
        break;
      }
      default:
        return bad("has an unknown kind " + std::to_string(gte >> 60));
    }
    sector += n, count -= n;
  }
  return ok();
}

Result<void> SeSparseExtent::read_run(const Run& run, uint8_t* buf) {
  if (run.kind != RunKind::kData) return fail(VIX_E_FAIL, "read_run: not a data run");
  // map() checked every grain of the run against the file's size, which never shrinks.
  return src_->read_exact(buf, run.count * 512, run.host, "SEsparse grain");
}

Result<void> SeSparseExtent::check_writable() const {
  return fail(VIX_E_NOT_SUPPORTED,
              src_->name() + ": SEsparse extents are read-only (writing them is not supported)");
}

}  // namespace vix::vmdk
