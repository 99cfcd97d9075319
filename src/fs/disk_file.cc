#include "fs/disk_file.h"

#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <algorithm>
#include <filesystem>

#include "common/log.h"
#include "vix/errors.h"
#include "vix/library.h"

namespace vixfs {
namespace {

std::string describe(const vix::Error& e) {
  return vix::error_text(e.code) + " (" + e.message + ")";
}

// Largest window asked of the device at once, so a huge sparse disk's map is built in pieces.
constexpr uint64_t kMapWindowSectors = uint64_t{1} << 31;  // 1 TiB

}  // namespace

DiskFile::DiskFile(vix::Connection* conn, std::string path, std::string name,
                   uint64_t capacity_bytes)
    : conn_(conn),
      path_(std::move(path)),
      name_(std::move(name)),
      capacity_bytes_(capacity_bytes) {}

DiskFile::DiskFile(ConnectionSource source, std::string path, std::string name,
                   uint64_t capacity_bytes)
    : conn_(nullptr),
      source_(std::move(source)),
      path_(std::move(path)),
      name_(std::move(name)),
      capacity_bytes_(capacity_bytes) {}

uint64_t DiskFile::size() const {
  std::lock_guard lock(mu_);
  return capacity_bytes_;
}

uint64_t DiskFile::allocated_blocks() const {
  std::lock_guard lock(mu_);
  return allocated_sectors_;
}

bool DiskFile::is_open() const {
  std::lock_guard lock(mu_);
  return disk_ != nullptr;
}

void DiskFile::set_write_policy(WritePolicy policy) {
  std::lock_guard lock(mu_);
  policy_ = std::move(policy);
}

void DiskFile::set_redo_log(RedoLog log) {
  std::lock_guard lock(mu_);
  redo_ = std::move(log);
}

bool DiskFile::use_redo_log_locked(bool for_write) const {
  if (!redo_) return false;
  if (for_write || redo_made_) return true;
  std::error_code ec;
  return std::filesystem::exists(redo_->path, ec);
}

std::string DiskFile::read_only_reason_locked() const {
  if (!policy_) return "the mount is read-only";
  if (std::string why = policy_(); !why.empty()) return why;
  return device_read_only_;
}

bool DiskFile::writable() const {
  std::lock_guard lock(mu_);
  return read_only_reason_locked().empty();
}

vix::Result<std::shared_ptr<vix::Disk>> DiskFile::open_locked(bool for_write) {
  if (disk_) return disk_;
  if (!conn_) {
    if (!source_) return vix::fail(VIX_E_FAIL, name_ + ": no connection");
    VIX_ASSIGN_OR_RETURN(conn_, source_());
  }
  // One vix::Disk serves every handle, so a file that may be written opens read-write even for
  // a reader: a writer arriving later then needs no second open of the same VMDK. A redo-log
  // file is the exception: its log is made only once someone writes, so that listing or
  // reading a snapshot leaves no file behind.
  const bool policy_allows = policy_ && policy_().empty();
  const bool over_log = policy_allows && use_redo_log_locked(for_write);
  const bool want_rw = policy_allows && (!redo_ || over_log);
  std::string rw_failure;
  vix::Result<std::unique_ptr<vix::Disk>> opened = vix::fail(VIX_E_FAIL, "not opened");
  if (over_log) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(redo_->path).parent_path(), ec);
    opened = conn_->open_with_redo_log(path_, 0, redo_->path);
    if (opened.ok()) redo_made_ = true;
  } else {
    opened = conn_->open(path_, want_rw ? 0 : VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  }
  if (!opened.ok() && want_rw) {
    // A file this user may only read (or a transport that opens read-only disks alone) still
    // reads; only writes are refused, with this reason.
    rw_failure = (over_log ? "its redo log " + redo_->path + " cannot be used: "
                           : std::string("it does not open read-write: ")) +
                 describe(opened.error());
    opened = conn_->open(path_, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  }
  if (!opened.ok()) return std::move(opened).error();
  std::unique_ptr<vix::Disk> disk = std::move(opened).value();
  const uint64_t capacity = disk->info().capacity_sectors * vix::kSectorSize;
  if (capacity != capacity_bytes_) {
    vix::log::info(name_ + ": capacity " + std::to_string(capacity) + " bytes (listed as " +
                   std::to_string(capacity_bytes_) + ")");
    capacity_bytes_ = capacity;
  }
  disk_ = std::move(disk);
  transport_ = std::string(disk_->transport_name());
  cached_ = vix::readahead_stats(&disk_->device()).has_value();
  opened_rw_ = false;
  device_read_only_.clear();
  if (want_rw) {
    if (!rw_failure.empty()) {
      device_read_only_ = rw_failure;
    } else if (over_log) {
      opened_rw_ = !disk_->read_only();
      if (!opened_rw_) device_read_only_ = "its redo log opened read-only";
    } else if (conn_->read_only()) {
      device_read_only_ =
          "its connection was made read-only (writes were not allowed when it was first "
          "connected; remount to write)";
    } else if (disk_->read_only()) {
      device_read_only_ = "the " + transport_ + " transport is read-only";
    } else if (disk_->info().create_type == "streamOptimized") {
      device_read_only_ = "streamOptimized (compressed) disks cannot be written";
    } else {
      opened_rw_ = true;
    }
  }
  vix::log::info(name_ + ": opened " + path_ + " with transport " + transport_ +
                 (opened_rw_ ? " (read-write)"
                  : want_rw  ? " (read-only: " + device_read_only_ + ")"
                             : std::string()));
  if (on_open_) on_open_(transport_, capacity_bytes_);
  return disk_;
}

void DiskFile::learn_allocation() {
  std::lock_guard lock(mu_);
  if (allocation_known_) return;
  allocation_known_ = true;
  const bool was_open = disk_ != nullptr;
  auto disk = open_locked();
  auto all_allocated = [this] {
    allocated_.assign(1, {0, capacity_bytes_ / vix::kSectorSize});
    allocated_sectors_ = (capacity_bytes_ + vix::kSectorSize - 1) / vix::kSectorSize;
  };
  if (!disk.ok()) {
    vix::log::error(name_ + ": cannot open " + path_ +
                    " to map its allocation: " + describe(disk.error()));
    all_allocated();
    return;
  }
  vix::BlockDevice& dev = (*disk)->device();
  const uint64_t capacity = dev.capacity_sectors();
  std::vector<vix::SectorExtent> merged;
  uint64_t total = 0;
  for (uint64_t start = 0; start < capacity; start += kMapWindowSectors) {
    const uint64_t count = std::min(kMapWindowSectors, capacity - start);
    auto extents = dev.allocated(start, count);
    if (!extents.ok()) {
      vix::log::error(name_ + ": allocation map at offset " +
                      std::to_string(start * vix::kSectorSize) + ": " + describe(extents.error()));
      all_allocated();
      if (!was_open) drop_disk_locked();
      return;
    }
    std::sort(extents->begin(), extents->end(),
              [](const auto& a, const auto& b) { return a.start < b.start; });
    for (const vix::SectorExtent& e : *extents) {
      if (e.count == 0) continue;
      if (!merged.empty() && e.start <= merged.back().start + merged.back().count) {
        const uint64_t end = std::max(merged.back().start + merged.back().count, e.start + e.count);
        merged.back().count = end - merged.back().start;
      } else {
        merged.push_back(e);
      }
    }
  }
  for (const auto& e : merged) total += e.count;
  allocated_ = std::move(merged);
  allocated_sectors_ = total;
  vix::log::info(name_ + ": " + std::to_string(total * vix::kSectorSize) + " of " +
                 std::to_string(capacity_bytes_) + " bytes allocated in " +
                 std::to_string(allocated_.size()) + " extents");
  if (!was_open) drop_disk_locked();  // only the metadata was needed; open() opens it again
}

int DiskFile::acquire(bool for_write) {
  std::lock_guard lock(mu_);
  auto refuse = [&](const std::string& why) {
    vix::log::error(name_ + ": open for writing refused (EROFS): " + why);
    return -EROFS;
  };
  if (for_write) {
    if (std::string why = read_only_reason_locked(); !why.empty()) return refuse(why);
    if (disk_ && !opened_rw_) {
      // Opened read-only while writes were not allowed; reopen unless a reader holds it. A
      // redo-log file swaps under its readers: nothing was written yet, so the log over the
      // disk reads the same bytes as the disk alone.
      if (users_ > 0 && !redo_) {
        return refuse("it is open read-only by another handle; close that first");
      }
      drop_disk_locked();
    }
  }
  auto disk = open_locked(for_write);
  if (!disk.ok()) {
    vix::log::error(name_ + ": open " + path_ + " failed: " + describe(disk.error()));
    return -EIO;
  }
  if (for_write && !opened_rw_) {
    const std::string why = read_only_reason_locked();
    if (users_ == 0) drop_disk_locked();
    return refuse(why.empty() ? "the disk opened read-only" : why);
  }
  ++users_;
  return 0;
}

void DiskFile::release() {
  std::lock_guard lock(mu_);
  if (users_ > 0 && --users_ == 0 && disk_) {
    drop_disk_locked();
    vix::log::info(name_ + ": closed (last handle released)");
  }
}

void DiskFile::close_now() {
  std::lock_guard lock(mu_);
  if (disk_) {
    drop_disk_locked();
    vix::log::info(name_ + ": closed");
  }
  users_ = 0;
  if (redo_ && redo_made_) {
    if (redo_->keep) {
      vix::log::info(name_ + ": redo log kept at " + redo_->path);
    } else if (unlink(redo_->path.c_str()) != 0 && errno != ENOENT) {
      vix::log::error(name_ + ": cannot remove redo log " + redo_->path + ": " + strerror(errno));
    } else {
      vix::log::info(name_ + ": redo log " + redo_->path + " dropped");
    }
    redo_made_ = false;
  }
}

void DiskFile::drop_disk_locked() {
  if (disk_) {
    // Closing makes written data durable, as VixDiskLib_Close does.
    if (opened_rw_ && dirty_.exchange(false)) {
      if (auto r = disk_->flush(); !r.ok()) {
        vix::log::error(name_ + ": flush at close failed: " + describe(r.error()));
      } else {
        flushes_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    closed_io_.add(disk_->transport_stats());
    if (auto c = vix::readahead_stats(&disk_->device())) closed_cache_.add(*c);
  }
  disk_.reset();
  opened_rw_ = false;
}

DiskFile::Stats DiskFile::stats() const {
  Stats s;
  s.reads = reads_.load();
  s.bytes = bytes_.load();
  s.errors = errors_.load();
  s.mapped_bytes = mapped_bytes_.load();
  s.writes = writes_.load();
  s.bytes_written = bytes_written_.load();
  s.flushes = flushes_.load();
  std::lock_guard lock(mu_);
  s.transport = transport_;
  s.transport_io = closed_io_;
  s.cached = cached_;
  s.cache = closed_cache_;
  if (disk_) {
    s.transport_io.add(disk_->transport_stats());
    if (auto c = vix::readahead_stats(&disk_->device())) s.cache.add(*c);
  }
  return s;
}

std::shared_ptr<vix::Disk> DiskFile::disk_for_read(uint64_t offset, size_t* length, ssize_t* rc) {
  std::shared_ptr<vix::Disk> disk;
  uint64_t size;
  {
    std::lock_guard lock(mu_);
    disk = disk_;
    size = capacity_bytes_;
  }
  *rc = disk ? 0 : -EBADF;
  if (!disk || offset >= size || *length == 0) return nullptr;
  *length = static_cast<size_t>(std::min<uint64_t>(*length, size - offset));
  return disk;
}

ssize_t DiskFile::count_read(uint64_t offset, size_t length, const vix::Result<void>& r) {
  reads_.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    vix::log::error(name_ + ": read of " + std::to_string(length) + " bytes at offset " +
                    std::to_string(offset) + " failed: " + describe(r.error()));
    return -EIO;
  }
  bytes_.fetch_add(length, std::memory_order_relaxed);
  return static_cast<ssize_t>(length);
}

ssize_t DiskFile::map_read(uint64_t offset, size_t length, std::vector<vix::HostPiece>* pieces) {
  ssize_t rc;
  std::shared_ptr<vix::Disk> disk = disk_for_read(offset, &length, &rc);
  if (!disk) return rc;
  if (offset % vix::kSectorSize != 0 || length % vix::kSectorSize != 0) return 0;
  vix::Result<bool> mapped =
      disk->map_to_host(offset / vix::kSectorSize, length / vix::kSectorSize, pieces);
  if (mapped.ok() && !*mapped) return 0;
  // A file piece's fd belongs to this disk: a redo-log swap or an unmount may drop the disk
  // before the reply is spliced, and a closed fd number can be reused by another file.
  for (vix::HostPiece& p : *pieces)
    if (p.fd >= 0 && !p.keep) p.keep = disk;
  rc = count_read(offset, length, mapped.ok() ? vix::ok() : vix::Result<void>(mapped.error()));
  if (rc > 0) mapped_bytes_.fetch_add(length, std::memory_order_relaxed);
  return rc;
}

ssize_t DiskFile::read(uint64_t offset, size_t length, uint8_t* buf) {
  ssize_t rc;
  std::shared_ptr<vix::Disk> disk = disk_for_read(offset, &length, &rc);
  if (!disk) return rc;
  const uint64_t first = offset / vix::kSectorSize;
  const uint64_t end = (offset + length + vix::kSectorSize - 1) / vix::kSectorSize;
  vix::Result<void> r;
  if (offset % vix::kSectorSize == 0 && length % vix::kSectorSize == 0) {
    r = disk->read(first, end - first, buf);
  } else {
    // Head or tail is a partial sector: read whole sectors into a bounce buffer.
    std::vector<uint8_t> bounce;
    try {
      bounce.resize((end - first) * vix::kSectorSize);
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
    r = disk->read(first, end - first, bounce.data());
    if (r.ok()) memcpy(buf, bounce.data() + (offset - first * vix::kSectorSize), length);
  }
  return count_read(offset, length, r);
}

namespace {

int errno_of_write(VixError code) {
  switch (code) {
    case VIX_E_FILE_READ_ONLY:
    case VIX_E_NOT_SUPPORTED:
      return EROFS;
    case VIX_E_DISK_FULL:
      return ENOSPC;
    case VIX_E_OUT_OF_MEMORY:
      return ENOMEM;
    default:
      return EIO;
  }
}

// Written ranges are recorded in whole 64 KiB grains (VMware's and qemu's default), so the map
// errs towards data: a SEEK_DATA that lands on zeros costs a copy, a hole over data loses it.
constexpr uint64_t kMarkSectors = 128;

}  // namespace

vix::Result<void> DiskFile::write_sectors(vix::Disk& disk, uint64_t offset, size_t length,
                                          const uint8_t* buf) {
  constexpr uint64_t kS = vix::kSectorSize;
  const uint64_t first = offset / kS;
  const uint64_t end = (offset + length + kS - 1) / kS;
  const uint64_t head = offset % kS;  // bytes of the first sector kept
  const bool tail_partial = (offset + length) % kS != 0;
  if (head == 0 && !tail_partial) return disk.write(first, end - first, buf);
  // Edge sectors are read under the read-ahead cache: through it, each would bring in a whole
  // chunk that the write then drops. Writes go through it, so it never holds newer bytes.
  vix::BlockDevice* edges = &disk.device();
  if (auto* cache = dynamic_cast<vix::ReadaheadDevice*>(edges)) edges = &cache->inner();
  uint8_t sector[kS];
  if (end - first == 1) {
    VIX_TRY(edges->read(first, 1, sector));
    memcpy(sector + head, buf, length);
    return disk.write(first, 1, sector);
  }
  const uint64_t mid_first = head ? first + 1 : first;
  const uint64_t mid_end = tail_partial ? end - 1 : end;
  if (head) {
    VIX_TRY(edges->read(first, 1, sector));
    memcpy(sector + head, buf, kS - head);
    VIX_TRY(disk.write(first, 1, sector));
  }
  if (mid_end > mid_first) {
    VIX_TRY(disk.write(mid_first, mid_end - mid_first, buf + (mid_first * kS - offset)));
  }
  if (tail_partial) {
    const uint64_t tail_at = (end - 1) * kS;
    VIX_TRY(edges->read(end - 1, 1, sector));
    memcpy(sector, buf + (tail_at - offset), offset + length - tail_at);
    VIX_TRY(disk.write(end - 1, 1, sector));
  }
  return vix::ok();
}

void DiskFile::mark_allocated_locked(uint64_t start, uint64_t count) {
  if (!allocation_known_ || count == 0) return;
  const uint64_t capacity = capacity_bytes_ / vix::kSectorSize;
  uint64_t s = start / kMarkSectors * kMarkSectors;
  uint64_t t = std::min(capacity, (start + count + kMarkSectors - 1) / kMarkSectors * kMarkSectors);
  if (s >= t) return;
  // First extent that ends at or after s: it and the ones up to t merge with [s, t).
  auto lo = std::lower_bound(
      allocated_.begin(), allocated_.end(), s,
      [](const vix::SectorExtent& e, uint64_t v) { return e.start + e.count < v; });
  auto hi = lo;
  uint64_t removed = 0;
  for (; hi != allocated_.end() && hi->start <= t; ++hi) {
    s = std::min(s, hi->start);
    t = std::max(t, hi->start + hi->count);
    removed += hi->count;
  }
  lo = allocated_.erase(lo, hi);
  allocated_.insert(lo, vix::SectorExtent{s, t - s});
  allocated_sectors_ += (t - s) - removed;
}

int DiskFile::disk_for_change(const char* what, std::shared_ptr<vix::Disk>* disk, uint64_t* size) {
  std::lock_guard lock(mu_);
  if (std::string why = read_only_reason_locked(); !why.empty() || !opened_rw_) {
    vix::log::error(name_ + ": " + what + " refused (EROFS): " +
                    (why.empty() ? std::string("the disk is not open read-write") : why));
    return -EROFS;
  }
  *disk = disk_;
  *size = capacity_bytes_;
  return *disk ? 0 : -EBADF;
}

ssize_t DiskFile::write(uint64_t offset, size_t length, const uint8_t* buf) {
  std::shared_ptr<vix::Disk> disk;
  uint64_t size = 0;
  if (int e = disk_for_change("write", &disk, &size); e != 0) return e;
  if (length == 0) return 0;
  if (offset >= size) {
    vix::log::error(name_ + ": write at offset " + std::to_string(offset) +
                    " refused (EFBIG): the disk's size is fixed at " + std::to_string(size) +
                    " bytes");
    return -EFBIG;
  }
  length = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
  const uint64_t first = offset / vix::kSectorSize;
  const uint64_t end = (offset + length + vix::kSectorSize - 1) / vix::kSectorSize;
  vix::Result<void> r;
  {
    // Every write holds its sectors, not only read-modify-writes: an aligned write landing
    // between another writer's read and write-back of a shared sector would be undone.
    auto guard = range_lock_.lock(first, end);
    r = write_sectors(*disk, offset, length, buf);
  }
  writes_.fetch_add(1, std::memory_order_relaxed);
  // Even a failed write may have changed sectors (and allocated grains).
  dirty_ = true;
  {
    std::lock_guard lock(mu_);
    mark_allocated_locked(first, end - first);
  }
  if (!r.ok()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    vix::log::error(name_ + ": write of " + std::to_string(length) + " bytes at offset " +
                    std::to_string(offset) + " failed: " + describe(r.error()));
    return -errno_of_write(r.error().code);
  }
  bytes_written_.fetch_add(length, std::memory_order_relaxed);
  return static_cast<ssize_t>(length);
}

int DiskFile::punch_hole(uint64_t offset, uint64_t length) {
  constexpr uint64_t kS = vix::kSectorSize;
  std::shared_ptr<vix::Disk> disk;
  uint64_t size = 0;
  if (int e = disk_for_change("punch hole", &disk, &size); e != 0) return e;
  if (offset >= size || length == 0) return 0;
  length = std::min<uint64_t>(length, size - offset);
  const uint64_t stop = offset + length;
  const uint64_t first = offset / kS, end = (stop + kS - 1) / kS;
  const uint64_t whole_first = (offset + kS - 1) / kS, whole_end = stop / kS;
  auto failed = [&](const vix::Error& e) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    const bool unsupported = e.code == VIX_E_NOT_SUPPORTED;
    vix::log::error(name_ + ": punch hole of " + std::to_string(length) + " bytes at offset " +
                    std::to_string(offset) + " failed" + (unsupported ? " (EOPNOTSUPP)" : "") +
                    ": " + describe(e));
    return unsupported ? -EOPNOTSUPP : -errno_of_write(e.code);
  };
  auto guard = range_lock_.lock(first, end);
  // Asked first, so a device that cannot discard leaves even the edge sectors untouched and
  // every punch on it fails alike, whatever its size.
  if (auto can = disk->unmap(whole_first, 0); !can.ok()) return failed(can.error());
  dirty_ = true;
  if (whole_end > whole_first) {
    if (auto r = disk->unmap(whole_first, whole_end - whole_first); !r.ok()) {
      return failed(r.error());
    }
  }
  // Edge sectors keep their bytes outside the range: read-modify-write with zeros.
  auto zero_edge = [&](uint64_t from, uint64_t to) -> vix::Result<void> {
    const std::vector<uint8_t> zeros(to - from, 0);
    VIX_TRY(write_sectors(*disk, from, to - from, zeros.data()));
    std::lock_guard lock(mu_);
    mark_allocated_locked(from / kS, 1);
    return vix::ok();
  };
  if (whole_first > whole_end) {  // the range lies inside one sector
    if (auto r = zero_edge(offset, stop); !r.ok()) return failed(r.error());
  } else {
    if (offset < whole_first * kS) {
      if (auto r = zero_edge(offset, whole_first * kS); !r.ok()) return failed(r.error());
    }
    if (stop > whole_end * kS) {
      if (auto r = zero_edge(whole_end * kS, stop); !r.ok()) return failed(r.error());
    }
  }
  // The cached allocation map keeps the discarded range: it means "may hold data", still true
  // of zeros, and SEEK_DATA landing on them costs a reader only a copy of zeros.
  return 0;
}

int DiskFile::flush(bool only_if_dirty) {
  std::shared_ptr<vix::Disk> disk;
  {
    std::lock_guard lock(mu_);
    if (!opened_rw_) return 0;
    disk = disk_;
  }
  if (!disk) return 0;
  // Cleared first: a write that lands during the flush sets it again.
  const bool was_dirty = dirty_.exchange(false);
  if (only_if_dirty && !was_dirty) return 0;
  auto r = disk->flush();
  if (!r.ok()) {
    dirty_ = true;
    errors_.fetch_add(1, std::memory_order_relaxed);
    vix::log::error(name_ + ": flush failed: " + describe(r.error()));
    return -EIO;
  }
  flushes_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

off_t DiskFile::seek(off_t offset, int whence) {
  learn_allocation();
  std::lock_guard lock(mu_);
  const uint64_t size = capacity_bytes_;
  if (offset < 0 || static_cast<uint64_t>(offset) >= size) return -ENXIO;
  const uint64_t pos = static_cast<uint64_t>(offset);
  const uint64_t sector = pos / vix::kSectorSize;
  // First extent ending after sector.
  auto it = std::upper_bound(
      allocated_.begin(), allocated_.end(), sector,
      [](uint64_t s, const vix::SectorExtent& e) { return s < e.start + e.count; });
  if (whence == SEEK_DATA) {
    if (it == allocated_.end()) return -ENXIO;
    if (it->start <= sector) return offset;
    return static_cast<off_t>(std::min(size, it->start * vix::kSectorSize));
  }
  // SEEK_HOLE: the end of the file counts as a hole.
  if (it == allocated_.end() || it->start > sector) return offset;
  return static_cast<off_t>(std::min(size, (it->start + it->count) * vix::kSectorSize));
}

}  // namespace vixfs
