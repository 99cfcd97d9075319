#include "fs/disk_file.h"

#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <algorithm>

#include "vix/errors.h"
#include "vix/library.h"

namespace vixfs {
namespace {

void log_info(const std::string& msg) {
  if (auto* lib = vix::Library::get()) lib->info(msg);
}
void log_error(const std::string& msg) {
  if (auto* lib = vix::Library::get()) lib->error(msg);
}
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

vix::Result<std::shared_ptr<vix::Disk>> DiskFile::open_locked() {
  if (disk_) return disk_;
  if (!conn_) {
    if (!source_) return vix::fail(VIX_E_FAIL, name_ + ": no connection");
    VIX_ASSIGN_OR_RETURN(conn_, source_());
  }
  VIX_ASSIGN_OR_RETURN(std::unique_ptr<vix::Disk> disk,
                       conn_->open(path_, VIXDISKLIB_FLAG_OPEN_READ_ONLY));
  const uint64_t capacity = disk->info().capacity_sectors * vix::kSectorSize;
  if (capacity != capacity_bytes_) {
    log_info(name_ + ": capacity " + std::to_string(capacity) + " bytes (listed as " +
             std::to_string(capacity_bytes_) + ")");
    capacity_bytes_ = capacity;
  }
  disk_ = std::move(disk);
  transport_ = std::string(disk_->transport_name());
  cached_ = vix::readahead_stats(&disk_->device()).has_value();
  log_info(name_ + ": opened " + path_ + " with transport " + std::string(disk_->transport_name()));
  if (on_open_) on_open_(std::string(disk_->transport_name()), capacity_bytes_);
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
    log_error(name_ + ": cannot open " + path_ +
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
      log_error(name_ + ": allocation map at offset " + std::to_string(start * vix::kSectorSize) +
                ": " + describe(extents.error()));
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
  log_info(name_ + ": " + std::to_string(total * vix::kSectorSize) + " of " +
           std::to_string(capacity_bytes_) + " bytes allocated in " +
           std::to_string(allocated_.size()) + " extents");
  if (!was_open) drop_disk_locked();  // only the metadata was needed; open() opens it again
}

int DiskFile::acquire() {
  std::lock_guard lock(mu_);
  auto disk = open_locked();
  if (!disk.ok()) {
    log_error(name_ + ": open " + path_ + " failed: " + describe(disk.error()));
    return -EIO;
  }
  ++users_;
  return 0;
}

void DiskFile::release() {
  std::lock_guard lock(mu_);
  if (users_ > 0 && --users_ == 0 && disk_) {
    drop_disk_locked();
    log_info(name_ + ": closed (last handle released)");
  }
}

void DiskFile::close_now() {
  std::lock_guard lock(mu_);
  if (disk_) {
    drop_disk_locked();
    log_info(name_ + ": closed");
  }
  users_ = 0;
}

void DiskFile::drop_disk_locked() {
  if (disk_) {
    closed_io_.add(disk_->transport_stats());
    if (auto c = vix::readahead_stats(&disk_->device())) closed_cache_.add(*c);
  }
  disk_.reset();
}

DiskFile::Stats DiskFile::stats() const {
  Stats s;
  s.reads = reads_.load();
  s.bytes = bytes_.load();
  s.errors = errors_.load();
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

ssize_t DiskFile::read(uint64_t offset, size_t length, uint8_t* buf) {
  std::shared_ptr<vix::Disk> disk;
  uint64_t size;
  {
    std::lock_guard lock(mu_);
    disk = disk_;
    size = capacity_bytes_;
  }
  if (!disk) return -EBADF;
  if (offset >= size || length == 0) return 0;
  length = static_cast<size_t>(std::min<uint64_t>(length, size - offset));
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
  reads_.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    log_error(name_ + ": read of " + std::to_string(length) + " bytes at offset " +
              std::to_string(offset) + " failed: " + describe(r.error()));
    return -EIO;
  }
  bytes_.fetch_add(length, std::memory_order_relaxed);
  return static_cast<ssize_t>(length);
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
