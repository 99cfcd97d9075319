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
  return allocation_ ? allocation_->allocated_sectors() : 0;
}

bool DiskFile::retire(const std::string& why) {
  std::lock_guard lock(mu_);
  if (disk_) return false;
  retired_ = why;
  if (source_) conn_ = nullptr;  // asked again, should the file come back (unretire)
  return true;
}

void DiskFile::unretire() {
  std::lock_guard lock(mu_);
  retired_.clear();
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
  if (!retired_.empty()) return vix::fail(VIX_E_OBJECT_NOT_FOUND, name_ + ": " + retired_);
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
  if (const std::string p = disk_->device().protocol(); !p.empty()) transport_ += " (" + p + ")";
  cached_ = disk_->cache_stats().has_value();
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
    } else if (disk_->info().create_type == "seSparse") {
      device_read_only_ = "seSparse (ESXi snapshot delta) disks are read-only in vixfs";
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
  if (allocation_) return;
  const bool was_open = disk_ != nullptr;
  auto disk = open_locked();
  if (!disk.ok()) {
    vix::log::error(name_ + ": cannot open " + path_ +
                    " to map its allocation: " + describe(disk.error()));
    allocation_ = vix::AllocationMap::everything(capacity_bytes_ / vix::kSectorSize);
    return;
  }
  auto map = vix::AllocationMap::learn((*disk)->device(), (*disk)->device().capacity_sectors());
  if (!map.ok()) {
    vix::log::error(name_ + ": " + describe(map.error()));
    allocation_ = vix::AllocationMap::everything(capacity_bytes_ / vix::kSectorSize);
  } else {
    allocation_ = std::move(map).value();
    vix::log::info(name_ + ": " +
                   std::to_string(allocation_->allocated_sectors() * vix::kSectorSize) + " of " +
                   std::to_string(capacity_bytes_) + " bytes allocated in " +
                   std::to_string(allocation_->extents().size()) + " extents");
  }
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
    // A privilege the server (or the mount's check of it) refuses is the user's EACCES.
    return disk.error().code == VIX_E_AUTHENTICATION_FAIL ? -EACCES : -EIO;
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
    if (auto c = disk_->cache_stats()) closed_cache_.add(*c);
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
    if (auto c = disk_->cache_stats()) s.cache.add(*c);
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
  if (!disk) return rc;  // also when there is nothing to read (rc 0)
  vix::Result<void> r = disk->pread(buf, length, offset);
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

}  // namespace

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
  vix::Result<void> r = disk->pwrite(buf, length, offset);
  writes_.fetch_add(1, std::memory_order_relaxed);
  // Even a failed write may have changed sectors (and allocated grains).
  dirty_ = true;
  {
    std::lock_guard lock(mu_);
    if (allocation_) allocation_->mark(first, end - first);
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
  std::shared_ptr<vix::Disk> disk;
  uint64_t size = 0;
  if (int e = disk_for_change("punch hole", &disk, &size); e != 0) return e;
  if (offset >= size || length == 0) return 0;
  length = std::min<uint64_t>(length, size - offset);
  auto r = disk->zero_range(offset, length);
  const bool unsupported = !r.ok() && r.error().code == VIX_E_NOT_SUPPORTED;
  // Anything but a device that cannot discard (which changes nothing) may have changed sectors.
  if (!unsupported) dirty_ = true;
  if (!r.ok()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    vix::log::error(name_ + ": punch hole of " + std::to_string(length) + " bytes at offset " +
                    std::to_string(offset) + " failed" + (unsupported ? " (EOPNOTSUPP)" : "") +
                    ": " + describe(r.error()));
    return unsupported ? -EOPNOTSUPP : -errno_of_write(r.error().code);
  }
  // Partial edge sectors were written (with zeros); the discarded whole sectors stay in the map:
  // it means "may hold data", still true of zeros, and SEEK_DATA landing on them costs a reader
  // only a copy of zeros.
  std::lock_guard lock(mu_);
  if (allocation_) {
    if (offset % vix::kSectorSize) allocation_->mark(offset / vix::kSectorSize, 1);
    if ((offset + length) % vix::kSectorSize) {
      allocation_->mark((offset + length) / vix::kSectorSize, 1);
    }
  }
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
  if (whence == SEEK_DATA) {
    std::optional<uint64_t> data = allocation_->next_data(pos, size);
    return data ? static_cast<off_t>(*data) : -ENXIO;
  }
  return static_cast<off_t>(allocation_->next_hole(pos, size));
}

}  // namespace vixfs
