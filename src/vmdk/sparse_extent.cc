#include "vmdk/sparse_extent.h"

#include "common/endian.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace vix::vmdk {

namespace {

constexpr uint64_t kMaxGrainSectors = 0x200000;        // qemu's limit
constexpr uint64_t kMaxCompressedGrainSectors = 2048;  // 1 MiB; VMware writes 128
constexpr uint64_t kMaxWritableGrainSectors = 2048;    // a COW grain is buffered in memory
constexpr uint64_t kMaxGdEntries = 32u << 20;          // qemu's "L1 size too big"
constexpr uint64_t kMaxDescriptorSectors = 2048;       // 1 MiB of embedded text
constexpr size_t kGtCacheEntries = 4096;               // 8 MiB of 512-entry tables
constexpr size_t kInflateCacheEntries = 4;
constexpr uint64_t kMaxSectors = uint64_t{1} << 54;  // bytes stay far below 2^63

uint64_t div_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

}  // namespace

SparseHeader decode_sparse_header(const uint8_t* p) {
  SparseHeader h;
  h.version = load_le32(p + 4);
  h.flags = load_le32(p + 8);
  h.capacity = load_le64(p + 12);
  h.grain_size = load_le64(p + 20);
  h.desc_offset = load_le64(p + 28);
  h.desc_size = load_le64(p + 36);
  h.num_gtes = load_le32(p + 44);
  h.rgd_offset = load_le64(p + 48);
  h.gd_offset = load_le64(p + 56);
  h.overhead = load_le64(p + 64);
  h.compress_algorithm = static_cast<uint16_t>(p[77] | p[78] << 8);
  return h;
}

Error SparseExtent::corrupt(const std::string& what) const {
  return fail(VIX_E_DISK_NEEDSREPAIR, src_->name() + ": " + what);
}

Result<std::unique_ptr<SparseExtent>> SparseExtent::open(std::unique_ptr<ByteSource> src) {
  std::unique_ptr<SparseExtent> e(new SparseExtent(std::move(src)));
  VIX_TRY(e->init());
  return e;
}

Result<void> SparseExtent::init() {
  const std::string& name = src_->name();
  auto inval = [&](const std::string& what) { return fail(VIX_E_DISK_INVAL, name + ": " + what); };
  VIX_ASSIGN_OR_RETURN(uint64_t size, src_->size());
  file_bytes_ = size;
  if (size < 512) return inval("file is shorter than the 512-byte sparse header");
  uint8_t sec[512];
  VIX_TRY(src_->read_exact(sec, sizeof sec, 0, "sparse header"));
  if (load_le32(sec) == kCowdMagic) return init_cowd(sec);
  if (load_le32(sec) != kSparseMagic) return inval("magic is not KDMV");
  h_ = decode_sparse_header(sec);

  if (h_.gd_offset == kGdAtEnd) {
    // The real header is the footer: footer marker, footer, EOS marker in the last 3 sectors.
    if (size < 4 * 512) return inval("gdOffset is GD_AT_END but the file has no room for a footer");
    uint8_t tail[1536];
    VIX_TRY(src_->read_exact(tail, sizeof tail, size - sizeof tail, "footer"));
    const uint8_t* marker = tail;
    const uint8_t* footer = tail + 512;
    const uint8_t* eos = tail + 1024;
    if (load_le32(footer) != kSparseMagic || load_le32(marker + 8) != 0 ||
        load_le32(marker + 12) != 3 || load_le64(eos) != 0 || load_le32(eos + 8) != 0 ||
        load_le32(eos + 12) != 0) {
      return inval("invalid footer (gdOffset is GD_AT_END)");
    }
    h_ = decode_sparse_header(footer);
    if (h_.gd_offset == kGdAtEnd) return inval("footer gdOffset is GD_AT_END too");
    gd_at_end_ = true;
  }

  if (h_.version > 3) return inval("unsupported header version " + std::to_string(h_.version));
  if (h_.num_gtes == 0 || h_.grain_size == 0) return inval("numGTEsPerGT or grainSize is zero");
  if (h_.num_gtes > 512)
    return inval("numGTEsPerGT " + std::to_string(h_.num_gtes) + " is larger than 512");
  if (h_.grain_size > kMaxGrainSectors)
    return inval("grainSize " + std::to_string(h_.grain_size) + " is too large");
  if (compressed() && h_.grain_size > kMaxCompressedGrainSectors)
    return inval("grainSize " + std::to_string(h_.grain_size) + " is too large for compression");
  if (h_.capacity > kMaxSectors)
    return inval("capacity " + std::to_string(h_.capacity) + " sectors is absurd");
  grain_bytes_ = h_.grain_size * 512;
  gt_cover_ = h_.grain_size * h_.num_gtes;
  gt_sectors_ = div_up(uint64_t{h_.num_gtes} * 4, 512);

  if (h_.overhead > kMaxSectors) return inval("overHead is absurd");
  if (h_.overhead * 512 > size) {
    return inval("file truncated: overHead says " + std::to_string(h_.overhead * 512) +
                 " bytes, file has " + std::to_string(size));
  }
  // Grains live after the header and the embedded descriptor.
  grain_floor_ = 1;
  if (h_.desc_offset != 0 && h_.desc_offset < kMaxSectors && h_.desc_size < kMaxSectors)
    grain_floor_ = std::max(grain_floor_, h_.desc_offset + h_.desc_size);

  uint64_t entries = div_up(h_.capacity, gt_cover_);
  if (entries > kMaxGdEntries)
    return inval("grain directory of " + std::to_string(entries) + " entries is too big");
  gd_.clear();
  if (entries > 0) {
    VIX_TRY(load_directory(h_.gd_offset, entries, "gdOffset", gd_));
    if (src_->writable() && (h_.flags & SparseHeader::kFlagRgd) && h_.rgd_offset != 0)
      VIX_TRY(load_directory(h_.rgd_offset, entries, "rgdOffset", rgd_));
    VIX_TRY(check_table_overlap());
  }
  next_sector_ = div_up(size, grain_bytes_) * h_.grain_size;
  return ok();
}

// COWD (ESX sparse, §8): only the first 44 bytes matter, as in qemu; 4096-entry grain tables,
// no redundant directory, no zeroed grains, no compression.
Result<void> SparseExtent::init_cowd(const uint8_t* sec) {
  auto inval = [&](const std::string& what) {
    return fail(VIX_E_DISK_INVAL, src_->name() + ": COWD " + what);
  };
  h_ = SparseHeader{};
  h_.version = 1;
  h_.capacity = load_le32(sec + 12);
  h_.grain_size = load_le32(sec + 16);
  h_.gd_offset = load_le32(sec + 20);
  h_.num_gtes = 4096;
  uint64_t gd_entries = load_le32(sec + 24);
  if (h_.grain_size == 0 || h_.grain_size > kMaxGrainSectors)
    return inval("grainSize " + std::to_string(h_.grain_size) + " is invalid");
  grain_bytes_ = h_.grain_size * 512;
  gt_cover_ = h_.grain_size * h_.num_gtes;
  gt_sectors_ = div_up(uint64_t{h_.num_gtes} * 4, 512);
  grain_floor_ = 4;  // the 2048-byte header
  uint64_t entries = std::min(gd_entries, div_up(h_.capacity, gt_cover_));
  if (h_.gd_offset < grain_floor_ && entries > 0) return inval("gdOffset points into the header");
  if (entries > 0) {
    VIX_TRY(load_directory(h_.gd_offset, entries, "gdOffset", gd_));
    VIX_TRY(check_table_overlap());
  }
  next_sector_ = div_up(file_bytes_, grain_bytes_) * h_.grain_size;
  return ok();
}

// Grain tables shared by several GD entries (or overlapping each other or the GD) would let a
// small file describe an enormous allocated disk and make writes through one entry show up under
// another; no writer produces them.
Result<void> SparseExtent::check_table_overlap() const {
  std::vector<uint32_t> tables;
  tables.reserve(gd_.size());
  for (uint32_t e : gd_)
    if (e != 0) tables.push_back(e);
  std::sort(tables.begin(), tables.end());
  uint64_t gd_sectors = div_up(gd_.size() * 4, 512);
  for (size_t i = 0; i < tables.size(); ++i) {
    uint64_t t = tables[i];
    if (i + 1 < tables.size() && tables[i + 1] - t < gt_sectors_)
      return corrupt("grain directory entries share or overlap the grain table at sector " +
                     std::to_string(t));
    if (t < h_.gd_offset + gd_sectors && h_.gd_offset < t + gt_sectors_)
      return corrupt("grain table at sector " + std::to_string(t) +
                     " overlaps the grain directory");
  }
  return ok();
}

Result<void> SparseExtent::load_directory(uint64_t offset, uint64_t entries, const char* what,
                                          std::vector<uint32_t>& out) {
  uint64_t size = file_bytes_;
  if (offset == 0 || offset > kMaxSectors || offset * 512 + entries * 4 > size) {
    return fail(VIX_E_DISK_INVAL, src_->name() + ": " + what + " " + std::to_string(offset) +
                                      ": grain directory of " + std::to_string(entries) +
                                      " entries lies outside the file");
  }
  std::vector<uint8_t> raw(entries * 4);  // bounded by the file's size, checked above
  VIX_TRY(src_->read_exact(raw.data(), raw.size(), offset * 512, what));
  out.resize(entries);
  for (uint64_t i = 0; i < entries; ++i) out[i] = load_le32(&raw[i * 4]);
  return ok();
}

Result<std::shared_ptr<SparseExtent::Table>> SparseExtent::grain_table(uint64_t gd_index) {
  {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(gd_index);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.pos);
      return it->second.table;
    }
  }
  uint64_t gt_sec = gd_[gd_index];
  if (gt_sec < grain_floor_ || gt_sec * 512 + uint64_t{h_.num_gtes} * 4 > file_bytes_) {
    return corrupt("grain directory entry " + std::to_string(gd_index) + " (" +
                   std::to_string(gt_sec) + ") points outside the file or into its header");
  }
  std::vector<uint8_t> raw(uint64_t{h_.num_gtes} * 4);
  VIX_TRY(src_->read_exact(raw.data(), raw.size(), gt_sec * 512, "grain table"));
  auto table = std::make_shared<Table>(h_.num_gtes);
  for (uint32_t i = 0; i < h_.num_gtes; ++i) (*table)[i] = load_le32(&raw[i * 4]);

  std::lock_guard lock(cache_mu_);
  auto it = cache_.find(gd_index);
  if (it != cache_.end()) return it->second.table;  // another reader was faster
  lru_.push_front(gd_index);
  cache_.emplace(gd_index, CacheEntry{table, lru_.begin()});
  while (cache_.size() > kGtCacheEntries) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  return table;
}

Result<void> SparseExtent::check_gte(uint32_t gte, uint64_t grain) const {
  if (gte < grain_floor_) {
    return corrupt("grain table entry for grain " + std::to_string(grain) + " (" +
                   std::to_string(gte) + ") points into the header or descriptor");
  }
  return ok();
}

Result<void> SparseExtent::map(uint64_t sector, uint64_t count, std::vector<Run>& out) {
  if (sector > h_.capacity || count > h_.capacity - sector)
    return fail(VIX_E_DISK_OUTOFRANGE, src_->name() + ": request beyond the extent's capacity");
  const bool zero_flag = h_.flags & SparseHeader::kFlagZeroGrain;
  std::shared_ptr<Table> gt;
  uint64_t gt_index = ~uint64_t{0};
  auto append = [&](uint64_t s, uint64_t n, RunKind kind, uint64_t host) {
    if (!out.empty()) {
      Run& last = out.back();
      if (last.kind == kind && last.sector + last.count == s && kind != RunKind::kCompressed &&
          (kind != RunKind::kData || last.host + last.count * 512 == host)) {
        last.count += n;
        return;
      }
    }
    out.push_back(Run{s, n, kind, host});
  };
  while (count > 0) {
    uint64_t gdi = sector / gt_cover_;
    if (gdi >= gd_.size()) return corrupt("sector beyond the grain directory");
    if (gd_[gdi] == 0) {
      uint64_t n = std::min(count, (gdi + 1) * gt_cover_ - sector);
      append(sector, n, RunKind::kHole, 0);
      sector += n, count -= n;
      continue;
    }
    if (gdi != gt_index) {
      VIX_ASSIGN_OR_RETURN(gt, grain_table(gdi));
      gt_index = gdi;
    }
    uint64_t grain = sector / h_.grain_size;
    uint64_t in_grain = sector % h_.grain_size;
    uint64_t n = std::min(count, h_.grain_size - in_grain);
    uint32_t gte = (*gt)[grain % h_.num_gtes];
    if (gte == 0) {
      // Runs of holes are common (fresh tables): take them in one tight scan.
      uint64_t gti = grain % h_.num_gtes, end = gti + 1;
      while (end < h_.num_gtes && (*gt)[end] == 0 && (end - gti) * h_.grain_size - in_grain < count)
        ++end;
      n = std::min(count, (end - gti) * h_.grain_size - in_grain);
      append(sector, n, RunKind::kHole, 0);
    } else if (gte == 1 && zero_flag) {
      append(sector, n, RunKind::kZero, 0);
    } else {
      VIX_TRY(check_gte(gte, grain));
      if (compressed())
        append(sector, n, RunKind::kCompressed, gte);
      else
        append(sector, n, RunKind::kData, (uint64_t{gte} + in_grain) * 512);
    }
    sector += n, count -= n;
  }
  return ok();
}

Result<std::shared_ptr<const std::vector<uint8_t>>> SparseExtent::inflate_grain(uint64_t host,
                                                                                uint64_t grain) {
  {
    std::lock_guard lock(inflate_mu_);
    for (auto& [h, data] : inflated_)
      if (h == host) return data;
  }
  const bool markers = h_.flags & SparseHeader::kFlagMarkers;
  uint64_t off = host * 512;
  uint64_t want = 2 * grain_bytes_ + (markers ? 12 : 0);
  std::vector<uint8_t> in(want);
  VIX_ASSIGN_OR_RETURN(size_t got, src_->pread(in.data(), in.size(), off));
  const uint8_t* zdata = in.data();
  uint64_t zsize = got;
  if (markers) {
    if (got < 12) return corrupt("compressed grain " + std::to_string(grain) + " lies past EOF");
    uint32_t size = load_le32(in.data() + 8);
    if (size == 0 || size > 2 * grain_bytes_)
      return corrupt("compressed grain " + std::to_string(grain) + " has invalid size " +
                     std::to_string(size));
    if (size > got - 12)
      return corrupt("compressed grain " + std::to_string(grain) + " is truncated");
    zdata += 12;
    zsize = size;
  }
  auto outbuf = std::make_shared<std::vector<uint8_t>>(grain_bytes_);
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return fail(VIX_E_FAIL, "zlib inflateInit failed");
  zs.next_in = const_cast<Bytef*>(zdata);
  zs.avail_in = static_cast<uInt>(zsize);
  zs.next_out = outbuf->data();
  zs.avail_out = static_cast<uInt>(outbuf->size());
  int rc = inflate(&zs, Z_FINISH);
  uint64_t produced = outbuf->size() - zs.avail_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END)
    return corrupt("compressed grain " + std::to_string(grain) + " is not a valid zlib stream");
  outbuf->resize(produced);

  std::lock_guard lock(inflate_mu_);
  if (inflated_.size() >= kInflateCacheEntries) inflated_.erase(inflated_.begin());
  inflated_.emplace_back(host, outbuf);
  return std::shared_ptr<const std::vector<uint8_t>>(outbuf);
}

Result<void> SparseExtent::read_run(const Run& run, uint8_t* buf) {
  uint64_t bytes = run.count * 512;
  if (run.kind == RunKind::kData) {
    VIX_ASSIGN_OR_RETURN(size_t got, src_->pread(buf, bytes, run.host));
    // Grains past EOF read as zeros, as in qemu.
    if (got < bytes) std::memset(buf + got, 0, bytes - got);
    return ok();
  }
  if (run.kind != RunKind::kCompressed) return fail(VIX_E_FAIL, "read_run: not a data run");
  uint64_t grain = run.sector / h_.grain_size;
  VIX_ASSIGN_OR_RETURN(auto data, inflate_grain(run.host, grain));
  uint64_t start = (run.sector % h_.grain_size) * 512;
  if (start + bytes > data->size())
    return corrupt("compressed grain " + std::to_string(grain) + " inflates to only " +
                   std::to_string(data->size()) + " bytes");
  std::memcpy(buf, data->data() + start, bytes);
  return ok();
}

Result<void> SparseExtent::check_writable() const {
  const std::string& n = src_->name();
  if (compressed())
    return fail(VIX_E_NOT_SUPPORTED, n + ": streamOptimized (compressed) extents are read-only");
  if (!src_->writable()) return fail(VIX_E_FILE_READ_ONLY, n + ": opened read-only");
  if (h_.version == 3)
    return fail(VIX_E_NOT_SUPPORTED, n + ": VMDK version 3 sparse extents are read-only");
  if (gd_at_end_)
    return fail(VIX_E_NOT_SUPPORTED,
                n + ": extents with the grain directory at the end are read-only");
  if (h_.grain_size > kMaxWritableGrainSectors)
    return fail(VIX_E_NOT_SUPPORTED,
                n + ": grainSize " + std::to_string(h_.grain_size) + " is too large to write");
  return ok();
}

Result<bool> SparseExtent::write_needs_below(uint64_t sector, uint64_t count) {
  if (count == 0 || sector >= h_.capacity) return false;
  auto partial_hole = [&](uint64_t s, uint64_t n) -> Result<bool> {
    uint64_t grain_start = s - s % h_.grain_size;
    uint64_t grain_end = std::min(grain_start + h_.grain_size, h_.capacity);
    if (s == grain_start && s + n >= grain_end) return false;  // whole grain: nothing to copy
    uint64_t gdi = s / gt_cover_;
    if (gdi >= gd_.size()) return corrupt("sector beyond the grain directory");
    if (gd_[gdi] == 0) return true;
    VIX_ASSIGN_OR_RETURN(auto gt, grain_table(gdi));
    uint32_t gte = (*gt)[(s / h_.grain_size) % h_.num_gtes];
    return gte == 0;
  };
  uint64_t first_n = std::min(count, h_.grain_size - sector % h_.grain_size);
  VIX_ASSIGN_OR_RETURN(bool first, partial_hole(sector, first_n));
  if (first || first_n == count) return first;
  uint64_t end = sector + count;
  uint64_t last_start = (end - 1) / h_.grain_size * h_.grain_size;
  return partial_hole(last_start, end - last_start);
}

Result<std::shared_ptr<SparseExtent::Table>> SparseExtent::allocate_grain_table(uint64_t gdi) {
  // qemu leaves GD holes unhandled and corrupts the file (§6.4); we append a zeroed table
  // (and its redundant twin), then point the directory at it.
  const bool want_rgt = !rgd_.empty() && rgd_[gdi] == 0;
  uint64_t need = gt_sectors_ * (want_rgt ? 2 : 1);
  if (next_sector_ + need > 0xffffffffu)
    return fail(VIX_E_DISK_FULL, src_->name() + ": no room for a grain table below 2^32 sectors");
  std::vector<uint8_t> zeros(gt_sectors_ * 512 * (want_rgt ? 2 : 1), 0);
  uint64_t gt_sec = next_sector_;
  VIX_TRY(src_->pwrite(zeros.data(), zeros.size(), gt_sec * 512));
  next_sector_ += need;
  file_bytes_ = std::max<uint64_t>(file_bytes_, next_sector_ * 512);
  uint8_t le[4];
  store_le32(le, static_cast<uint32_t>(gt_sec));
  VIX_TRY(src_->pwrite(le, 4, h_.gd_offset * 512 + gdi * 4));
  gd_[gdi] = static_cast<uint32_t>(gt_sec);
  if (want_rgt) {
    store_le32(le, static_cast<uint32_t>(gt_sec + gt_sectors_));
    VIX_TRY(src_->pwrite(le, 4, h_.rgd_offset * 512 + gdi * 4));
    rgd_[gdi] = static_cast<uint32_t>(gt_sec + gt_sectors_);
  }
  auto table = std::make_shared<Table>(h_.num_gtes, 0);
  std::lock_guard lock(cache_mu_);
  auto it = cache_.find(gdi);
  if (it != cache_.end()) {
    it->second.table = table;
  } else {
    lru_.push_front(gdi);
    cache_.emplace(gdi, CacheEntry{table, lru_.begin()});
  }
  return table;
}

Result<void> SparseExtent::write(uint64_t sector, uint64_t count, const uint8_t* buf,
                                 const BelowReader& below) {
  VIX_TRY(check_writable());
  if (sector > h_.capacity || count > h_.capacity - sector)
    return fail(VIX_E_DISK_OUTOFRANGE, src_->name() + ": write beyond the extent's capacity");
  const bool zero_flag = h_.flags & SparseHeader::kFlagZeroGrain;
  std::vector<uint8_t> grain_buf;
  while (count > 0) {
    uint64_t gdi = sector / gt_cover_;
    if (gdi >= gd_.size()) return corrupt("sector beyond the grain directory");
    std::shared_ptr<Table> gt;
    if (gd_[gdi] == 0) {
      VIX_ASSIGN_OR_RETURN(gt, allocate_grain_table(gdi));
    } else {
      VIX_ASSIGN_OR_RETURN(gt, grain_table(gdi));
    }
    uint64_t grain = sector / h_.grain_size;
    uint64_t in_grain = sector % h_.grain_size;
    uint64_t n = std::min(count, h_.grain_size - in_grain);
    uint32_t gti = static_cast<uint32_t>(grain % h_.num_gtes);
    uint32_t gte = (*gt)[gti];
    bool zeroed = gte == 1 && zero_flag;
    if (gte != 0 && !zeroed) {
      VIX_TRY(check_gte(gte, grain));
      VIX_TRY(src_->pwrite(buf, n * 512, (uint64_t{gte} + in_grain) * 512));
    } else {
      if (next_sector_ + h_.grain_size > 0xffffffffu)
        return fail(VIX_E_DISK_FULL, src_->name() + ": no room for a grain below 2^32 sectors");
      const uint8_t* grain_data = buf;  // a write of the whole grain goes out as it came
      if (n != h_.grain_size) {
        grain_buf.assign(grain_bytes_, 0);
        uint64_t grain_start = grain * h_.grain_size;
        uint64_t live_end = std::min(h_.grain_size, h_.capacity - grain_start);
        if (!zeroed && in_grain > 0) VIX_TRY(below(grain_start, in_grain, grain_buf.data()));
        uint64_t tail = in_grain + n;
        if (!zeroed && tail < live_end)
          VIX_TRY(below(grain_start + tail, live_end - tail, grain_buf.data() + tail * 512));
        std::memcpy(grain_buf.data() + in_grain * 512, buf, n * 512);
        grain_data = grain_buf.data();
      }
      uint64_t new_sec = next_sector_;
      // Data first, then the primary GTE, then the redundant one: a crash leaks at most a grain.
      VIX_TRY(src_->pwrite(grain_data, grain_bytes_, new_sec * 512));
      next_sector_ += h_.grain_size;
      file_bytes_ = std::max<uint64_t>(file_bytes_, next_sector_ * 512);
      uint8_t le[4];
      store_le32(le, static_cast<uint32_t>(new_sec));
      VIX_TRY(src_->pwrite(le, 4, uint64_t{gd_[gdi]} * 512 + gti * 4));
      (*gt)[gti] = static_cast<uint32_t>(new_sec);
      if (!rgd_.empty() && rgd_[gdi] != 0) {
        uint64_t rgt_sec = rgd_[gdi];
        if (rgt_sec < grain_floor_ || rgt_sec * 512 + uint64_t{h_.num_gtes} * 4 > file_bytes_)
          return corrupt("redundant grain directory entry " + std::to_string(gdi) +
                         " points outside the file");
        VIX_TRY(src_->pwrite(le, 4, rgt_sec * 512 + gti * 4));
      }
    }
    sector += n, count -= n, buf += n * 512;
  }
  return ok();
}

Result<void> SparseExtent::flush() {
  return src_->flush();
}

Result<std::string> SparseExtent::read_embedded_descriptor() {
  if (h_.desc_offset == 0 || h_.desc_size == 0) return std::string();
  if (h_.desc_size > kMaxDescriptorSectors || h_.desc_offset > kMaxSectors)
    return fail(VIX_E_DISK_INVAL, src_->name() + ": descriptorSize " +
                                      std::to_string(h_.desc_size) + " sectors is too large");
  std::string text(h_.desc_size * 512, '\0');
  VIX_TRY(src_->read_exact(text.data(), text.size(), h_.desc_offset * 512, "embedded descriptor"));
  text.resize(std::strlen(text.c_str()));
  return text;
}

Result<void> SparseExtent::write_embedded_descriptor(std::string_view text) {
  uint64_t area = h_.desc_size * 512;
  if (h_.desc_offset == 0 || h_.desc_size == 0 || h_.desc_size > kMaxDescriptorSectors)
    return fail(VIX_E_DISK_INVAL, src_->name() + ": no embedded descriptor area");
  if (text.size() > area)
    return fail(VIX_E_DISK_INVAL, src_->name() + ": descriptor of " + std::to_string(text.size()) +
                                      " bytes does not fit the embedded area of " +
                                      std::to_string(area) + " bytes");
  std::vector<uint8_t> buf(area, 0);
  std::memcpy(buf.data(), text.data(), text.size());
  VIX_TRY(src_->pwrite(buf.data(), buf.size(), h_.desc_offset * 512));
  return ok();
}

}  // namespace vix::vmdk
