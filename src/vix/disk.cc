#include <algorithm>
#include <cstring>
#include <new>

#include "common/byte_source.h"
#include "common/log.h"
#include "vix/connection.h"
#include "vix/errors.h"
#include "vix/library.h"
#include "vmdk/vmdk.h"

namespace vix {

Disk::Disk(Connection* conn, std::string path, uint32_t flags, std::unique_ptr<BlockDevice> dev)
    : conn_(conn), path_(std::move(path)), flags_(flags), dev_(std::move(dev)) {
  uncached_ = dev_.get();
  if (conn_) conn_->open_disks_.fetch_add(1);
}

Disk::~Disk() {
  wait();
  if (conn_) conn_->open_disks_.fetch_sub(1);
}

bool Disk::read_only() const {
  // Connection::open sets OPEN_READ_ONLY for a read-only connection; a disk over a redo log
  // is writable on one because its flags do not say read-only.
  return (flags_ & VIXDISKLIB_FLAG_OPEN_READ_ONLY) != 0 || dev_->read_only();
}

namespace {

Result<void> check_range(const std::string& path, uint64_t capacity, uint64_t sector,
                         uint64_t count) {
  if (sector > capacity || count > capacity - sector) {
    return fail(VIX_E_DISK_OUTOFRANGE, path + ": sectors " + std::to_string(sector) + "+" +
                                           std::to_string(count) + " lie past the capacity of " +
                                           std::to_string(capacity) + " sectors");
  }
  return ok();
}

}  // namespace

Result<void> Disk::read(uint64_t sector, uint64_t count, uint8_t* buf) {
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  if (count == 0) return ok();
  if (buf == nullptr) return fail(VIX_E_INVALID_ARG, path_ + ": read into a NULL buffer");
  return dev_->read(sector, count, buf);
}

Result<bool> Disk::map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) {
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  return dev_->map_to_host(sector, count, out);
}

Result<void> Disk::write(uint64_t sector, uint64_t count, const uint8_t* buf) {
  if (read_only()) return fail(VIX_E_FILE_READ_ONLY, path_ + ": disk is open read-only");
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  if (count == 0) return ok();
  if (buf == nullptr) return fail(VIX_E_INVALID_ARG, path_ + ": write from a NULL buffer");
  return dev_->write(sector, count, buf);
}

Result<void> Disk::flush() {
  if (read_only()) return ok();
  return dev_->flush();
}

Result<void> Disk::unmap(uint64_t sector, uint64_t count) {
  if (read_only()) return fail(VIX_E_FILE_READ_ONLY, path_ + ": disk is open read-only");
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  return dev_->unmap(sector, count);  // count 0 too: it answers whether the device can
}

Result<void> Disk::pread(uint8_t* buf, uint64_t length, uint64_t offset) {
  const uint64_t first = offset / kSectorSize;
  const uint64_t end = (offset + length + kSectorSize - 1) / kSectorSize;
  if (offset % kSectorSize == 0 && length % kSectorSize == 0) return read(first, end - first, buf);
  if (length == 0) return ok();
  // Head or tail is a partial sector: whole sectors into a bounce buffer.
  std::vector<uint8_t> bounce;
  try {
    bounce.resize((end - first) * kSectorSize);
  } catch (const std::bad_alloc&) {
    return fail(VIX_E_OUT_OF_MEMORY, path_ + ": no memory for a " + std::to_string(bounce.size()) +
                                         "-byte bounce buffer");
  }
  VIX_TRY(read(first, end - first, bounce.data()));
  memcpy(buf, bounce.data() + (offset - first * kSectorSize), length);
  return ok();
}

Result<void> Disk::pwrite(const uint8_t* buf, uint64_t length, uint64_t offset) {
  if (length == 0) return ok();
  auto guard =
      range_lock_.lock(offset / kSectorSize, (offset + length + kSectorSize - 1) / kSectorSize);
  return write_bytes_locked(buf, length, offset);
}

Result<void> Disk::write_bytes_locked(const uint8_t* buf, uint64_t length, uint64_t offset) {
  const uint64_t first = offset / kSectorSize;
  const uint64_t end = (offset + length + kSectorSize - 1) / kSectorSize;
  const uint64_t head = offset % kSectorSize;  // bytes of the first sector kept
  const bool tail_partial = (offset + length) % kSectorSize != 0;
  if (head == 0 && !tail_partial) return write(first, end - first, buf);
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), first, end - first));
  uint8_t sector[kSectorSize];
  if (end - first == 1) {
    VIX_TRY(uncached_->read(first, 1, sector));
    memcpy(sector + head, buf, length);
    return write(first, 1, sector);
  }
  const uint64_t mid_first = head ? first + 1 : first;
  const uint64_t mid_end = tail_partial ? end - 1 : end;
  if (head) {
    VIX_TRY(uncached_->read(first, 1, sector));
    memcpy(sector + head, buf, kSectorSize - head);
    VIX_TRY(write(first, 1, sector));
  }
  if (mid_end > mid_first) {
    VIX_TRY(write(mid_first, mid_end - mid_first, buf + (mid_first * kSectorSize - offset)));
  }
  if (tail_partial) {
    const uint64_t tail_at = (end - 1) * kSectorSize;
    VIX_TRY(uncached_->read(end - 1, 1, sector));
    memcpy(sector, buf + (tail_at - offset), offset + length - tail_at);
    VIX_TRY(write(end - 1, 1, sector));
  }
  return ok();
}

Result<void> Disk::zero_range(uint64_t offset, uint64_t length) {
  if (length == 0) return ok();
  const uint64_t stop = offset + length;
  const uint64_t whole_first = (offset + kSectorSize - 1) / kSectorSize;
  const uint64_t whole_end = stop / kSectorSize;
  auto guard = range_lock_.lock(offset / kSectorSize, (stop + kSectorSize - 1) / kSectorSize);
  // Asked first, so a device that cannot discard leaves even the edge sectors untouched and
  // every such call fails alike, whatever its size.
  VIX_TRY(unmap(whole_first, 0));
  if (whole_end > whole_first) VIX_TRY(unmap(whole_first, whole_end - whole_first));
  // Edge sectors keep their bytes outside the range: read-modify-write with zeros.
  auto zero_edge = [&](uint64_t from, uint64_t to) {
    const std::vector<uint8_t> zeros(to - from, 0);
    return write_bytes_locked(zeros.data(), to - from, from);
  };
  if (whole_first > whole_end) return zero_edge(offset, stop);  // inside one sector
  if (offset < whole_first * kSectorSize) VIX_TRY(zero_edge(offset, whole_first * kSectorSize));
  if (stop > whole_end * kSectorSize) VIX_TRY(zero_edge(whole_end * kSectorSize, stop));
  return ok();
}

Result<void> Disk::read_async(uint64_t sector, uint64_t count, uint8_t* buf, CompletionFn done) {
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  if (count != 0 && buf == nullptr) {
    return fail(VIX_E_INVALID_ARG, path_ + ": read into a NULL buffer");
  }
  return submit([this, sector, count, buf] { return read(sector, count, buf); }, std::move(done));
}

Result<void> Disk::write_async(uint64_t sector, uint64_t count, const uint8_t* buf,
                               CompletionFn done) {
  if (read_only()) return fail(VIX_E_FILE_READ_ONLY, path_ + ": disk is open read-only");
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  if (count != 0 && buf == nullptr) {
    return fail(VIX_E_INVALID_ARG, path_ + ": write from a NULL buffer");
  }
  return submit([this, sector, count, buf] { return write(sector, count, buf); }, std::move(done));
}

Result<void> Disk::submit(std::function<Result<void>()> io, CompletionFn done) {
  if (!done) return fail(VIX_E_INVALID_ARG, path_ + ": asynchronous I/O without a callback");
  Library* lib = Library::get();
  if (lib == nullptr) return fail(VIX_E_DISK_NOINIT, path_ + ": library not initialized");
  {
    std::lock_guard lock(async_mu_);
    ++async_pending_;
  }
  bool accepted = lib->submit([this, io = std::move(io), done = std::move(done)] {
    VixError code = VIX_OK;
    try {
      Result<void> r = io();
      if (!r.ok()) {
        code = r.error().code;
        // On this (worker) thread, so GetErrorText called from the callback can explain it.
        note_error_detail(r.error());
        log::info(r.error().message);
      }
    } catch (const std::bad_alloc&) {
      code = VIX_E_OUT_OF_MEMORY;
    } catch (...) {
      code = VIX_E_FAIL;
    }
    try {
      done(code);
    } catch (...) {
      // A C callback cannot throw; a C++ one that does must not take the worker down.
    }
    std::lock_guard lock(async_mu_);
    --async_pending_;
    async_cv_.notify_all();
  });
  if (!accepted) {
    std::lock_guard lock(async_mu_);
    --async_pending_;
    async_cv_.notify_all();
    return fail(VIX_E_DISK_NOINIT, path_ + ": library is shutting down (VixDiskLib_Exit)");
  }
  return ok();
}

void Disk::wait() {
  std::unique_lock lock(async_mu_);
  async_cv_.wait(lock, [&] { return async_pending_ == 0; });
}

Result<std::vector<SectorExtent>> Disk::query_allocated(uint64_t sector, uint64_t count,
                                                        uint64_t chunk) {
  if (chunk < VIXDISKLIB_MIN_CHUNK_SIZE) {
    return fail(VIX_E_INVALID_ARG, path_ + ": chunk size " + std::to_string(chunk) +
                                       " is below the minimum of " +
                                       std::to_string(VIXDISKLIB_MIN_CHUNK_SIZE) + " sectors");
  }
  if (sector % chunk != 0 || count % chunk != 0) {
    return fail(VIX_E_INVALID_ARG,
                path_ + ": range " + std::to_string(sector) + "+" + std::to_string(count) +
                    " is not a multiple of the chunk size " + std::to_string(chunk));
  }
  if (count / chunk > VIXDISKLIB_MAX_CHUNK_NUMBER) {
    return fail(VIX_E_INVALID_ARG, path_ + ": " + std::to_string(count / chunk) +
                                       " chunks requested, at most " +
                                       std::to_string(VIXDISKLIB_MAX_CHUNK_NUMBER) + " per call");
  }
  VIX_TRY(check_range(path_, dev_->capacity_sectors(), sector, count));
  std::vector<SectorExtent> out;
  if (count == 0) return out;
  VIX_ASSIGN_OR_RETURN(std::vector<SectorExtent> extents, dev_->allocated(sector, count));
  const uint64_t end = sector + count;
  // Devices promise sorted extents; sorting anyway keeps a buggy device from tripping
  // clients that assert on order (nbdkit aborts).
  std::sort(extents.begin(), extents.end(),
            [](const SectorExtent& a, const SectorExtent& b) { return a.start < b.start; });
  for (const SectorExtent& e : extents) {
    if (e.count == 0) continue;
    uint64_t s = std::max(e.start, sector);
    uint64_t t = e.start + std::min(e.count, end - std::min(e.start, end));
    if (s >= t) continue;
    s = s / chunk * chunk;  // sector is chunk-aligned, so s stays >= sector
    t = std::min(end, (t + chunk - 1) / chunk * chunk);  // end is chunk-aligned too
    if (!out.empty() && s <= out.back().start + out.back().count) {
      uint64_t back_end = std::max(out.back().start + out.back().count, t);
      out.back().count = back_end - out.back().start;
    } else {
      out.push_back({s, t - s});
    }
  }
  return out;
}

Result<void> Disk::write_metadata(const std::string& key, const std::string& value) {
  if (read_only()) return fail(VIX_E_FILE_READ_ONLY, path_ + ": disk is open read-only");
  if (key.empty()) return fail(VIX_E_INVALID_ARG, path_ + ": empty metadata key");
  return dev_->write_metadata(key, value);
}

Result<void> Disk::create_child(const std::string& child_path, VixDiskLibDiskType type) {
  if (conn_ && !conn_->spec().is_local()) {
    return fail(VIX_E_NOT_SUPPORTED, child_path + ": CreateChild works on local disks only");
  }
  if (type != VIXDISKLIB_DISK_MONOLITHIC_SPARSE && type != VIXDISKLIB_DISK_SPLIT_SPARSE) {
    return fail(VIX_E_INVALID_ARG, child_path +
                                       ": a child disk must be monolithic or split "
                                       "sparse, got disk type " +
                                       std::to_string(static_cast<int>(type)));
  }
  if (child_path.empty()) return fail(VIX_E_INVALID_ARG, "CreateChild: empty child path");
  auto opener = make_local_opener();
  return vmdk::create_child(*opener, path_, child_path, type);
}

}  // namespace vix
