// A block device node read as a disk. One fd, pread/pwrite only (no seek position), so any
// number of threads may use it at once. With O_DIRECT the kernel wants the buffer, the offset
// and the length aligned to the device's logical block size; callers (FUSE, the C API) hand us
// arbitrary buffers, so unaligned requests go through a bounded, aligned bounce buffer.
#include "transports/device_node.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>

namespace vix {

namespace {

// The memory alignment O_DIRECT needs is at most a page on every block device Linux has.
constexpr size_t kMemAlign = 4096;
// Largest bounce buffer one request allocates; bigger unaligned requests go in pieces.
constexpr size_t kBounceBytes = size_t{1} << 20;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

Result<AlignedBuffer> alloc_aligned(size_t len, const std::string& path) {
  void* p = std::aligned_alloc(kMemAlign, (len + kMemAlign - 1) / kMemAlign * kMemAlign);
  if (p == nullptr) {
    return fail(VIX_E_OUT_OF_MEMORY,
                path + ": cannot allocate a " + std::to_string(len) + "-byte I/O buffer");
  }
  return AlignedBuffer(static_cast<uint8_t*>(p));
}

VixError open_error_code(int err) {
  switch (err) {
    case ENOENT:
    case ENXIO:
    case ENODEV:
      return VIX_E_FILE_NOT_FOUND;
    case EACCES:
    case EPERM:
      return VIX_E_FILE_ACCESS_ERROR;
    case EROFS:
      return VIX_E_FILE_READ_ONLY;
    default:
      return VIX_E_FILE_ERROR;
  }
}

std::string errno_text(int err) {
  return std::strerror(err);
}

class DeviceNode final : public BlockDevice {
 public:
  DeviceNode(int fd, std::string path, uint64_t capacity_sectors, bool read_only, bool direct,
             uint32_t io_align, uint32_t physical_block, std::string transport)
      : fd_(fd),
        path_(std::move(path)),
        capacity_(capacity_sectors),
        read_only_(read_only),
        direct_(direct),
        align_(io_align),
        physical_block_(physical_block),
        transport_(std::move(transport)) {}
  ~DeviceNode() override { ::close(fd_); }
  DeviceNode(const DeviceNode&) = delete;
  DeviceNode& operator=(const DeviceNode&) = delete;

  uint64_t capacity_sectors() const override { return capacity_; }
  bool read_only() const override { return read_only_; }
  std::string_view transport_name() const override { return transport_; }

  DiskInfo info() const override {
    DiskInfo d;
    d.capacity_sectors = capacity_;
    // A LUN has no geometry of its own; the 255/63 translation VMware reports for large disks.
    Geometry g;
    g.heads = 255;
    g.sectors = 63;
    g.cylinders =
        static_cast<uint32_t>(std::clamp<uint64_t>(capacity_ / (255 * 63), 1, UINT32_MAX));
    d.bios_geometry = g;
    d.phys_geometry = g;
    d.adapter = VIXDISKLIB_ADAPTER_SCSI_LSILOGIC;  // RDMs and hot-added disks sit on SCSI
    d.create_type = "device";
    // The API addresses 512-byte sectors whatever the device's block size; the physical size
    // tells a client which request size the device prefers.
    d.logical_sector_size = static_cast<uint32_t>(kSectorSize);
    d.physical_sector_size = physical_block_;
    return d;
  }

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override {
    VIX_TRY(check_range(sector, count));
    uint64_t off = sector * kSectorSize;
    size_t len = static_cast<size_t>(count * kSectorSize);
    if (!direct_ || is_aligned(buf, off, len)) return read_full(buf, len, off);
    VIX_ASSIGN_OR_RETURN(AlignedBuffer bounce, alloc_bounce(len));
    while (len > 0) {
      const size_t piece = std::min(len, kBounceBytes);
      const uint64_t a_off = off / align_ * align_;
      const size_t a_len = round_up(off + piece - a_off);
      VIX_TRY(read_full(bounce.get(), a_len, a_off));
      std::memcpy(buf, bounce.get() + (off - a_off), piece);
      buf += piece, off += piece, len -= piece;
    }
    return ok();
  }

  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override {
    if (read_only_) {
      return fail(VIX_E_FILE_READ_ONLY, path_ + ": the disk is open read-only");
    }
    VIX_TRY(check_range(sector, count));
    uint64_t off = sector * kSectorSize;
    size_t len = static_cast<size_t>(count * kSectorSize);
    if (!direct_) return write_full(buf, len, off);
    if (is_aligned(buf, off, len)) {
      std::shared_lock lock(rmw_mu_);
      return write_full(buf, len, off);
    }
    VIX_ASSIGN_OR_RETURN(AlignedBuffer bounce, alloc_bounce(len));
    while (len > 0) {
      const size_t piece = std::min(len, kBounceBytes);
      const uint64_t a_off = off / align_ * align_;
      const size_t a_len = round_up(off + piece - a_off);
      // When the device's block is larger than a sector, the edges of the block hold bytes the
      // caller did not send: read-modify-write, exclusive so that a neighbouring sector's write
      // in the same block is not lost.
      const bool partial = a_off != off || a_len != piece;
      if (partial) {
        std::unique_lock lock(rmw_mu_);
        VIX_TRY(read_full(bounce.get(), a_len, a_off));
        std::memcpy(bounce.get() + (off - a_off), buf, piece);
        VIX_TRY(write_full(bounce.get(), a_len, a_off));
      } else {
        std::memcpy(bounce.get(), buf, piece);
        std::shared_lock lock(rmw_mu_);
        VIX_TRY(write_full(bounce.get(), a_len, a_off));
      }
      buf += piece, off += piece, len -= piece;
    }
    return ok();
  }

  Result<void> flush() override {
    if (read_only_) return ok();
    if (::fdatasync(fd_) != 0) {
      return fail(VIX_E_FILE_ERROR, path_ + ": fdatasync: " + errno_text(errno));
    }
    return ok();
  }

  // A device has no allocation map: every sector is data.
  Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override {
    VIX_TRY(check_range(sector, count));
    std::vector<SectorExtent> out;
    if (count > 0) out.push_back({sector, count});
    return out;
  }

 private:
  Result<void> check_range(uint64_t sector, uint64_t count) const {
    if (sector > capacity_ || count > capacity_ - sector) {
      return fail(VIX_E_DISK_OUTOFRANGE, path_ + ": sectors " + std::to_string(sector) + "+" +
                                             std::to_string(count) + " past the end (" +
                                             std::to_string(capacity_) + " sectors)");
    }
    // One request's byte length must fit size_t and the kernel's per-call limit is handled by
    // the loops below; this only guards the multiplication.
    if (count > SIZE_MAX / kSectorSize) {
      return fail(VIX_E_INVALID_ARG,
                  path_ + ": request of " + std::to_string(count) + " sectors is too large");
    }
    return ok();
  }

  // Room for one piece of a request of len bytes, widened to whole device blocks at both ends.
  Result<AlignedBuffer> alloc_bounce(size_t len) const {
    return alloc_aligned(std::min(len, kBounceBytes) + 2 * size_t{align_}, path_);
  }
  bool is_aligned(const void* buf, uint64_t off, size_t len) const {
    return reinterpret_cast<uintptr_t>(buf) % kMemAlign == 0 && off % align_ == 0 &&
           len % align_ == 0;
  }
  size_t round_up(uint64_t n) const {
    return static_cast<size_t>((n + align_ - 1) / align_ * align_);
  }

  // Reads all len bytes; a device that ends early (it shrank, or a regular file's tail that
  // an O_DIRECT read rounds past) is acceptable only past the disk's capacity.
  Result<void> read_full(uint8_t* buf, size_t len, uint64_t off) const {
    const uint64_t need_end = std::min<uint64_t>(off + len, capacity_ * kSectorSize);
    size_t done = 0;
    while (done < len) {
      const ssize_t n = ::pread(fd_, buf + done, len - done, static_cast<off_t>(off + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(VIX_E_FILE_ERROR, path_ + ": read of " + std::to_string(len - done) +
                                          " bytes at offset " + std::to_string(off + done) + ": " +
                                          errno_text(errno));
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    if (off + done < need_end) {
      return fail(VIX_E_HOST_FILE_ERROR_EOF,
                  path_ + ": the device ends at byte " + std::to_string(off + done) +
                      ", before the disk's capacity (" + std::to_string(capacity_ * kSectorSize) +
                      " bytes)");
    }
    return ok();
  }

  Result<void> write_full(const uint8_t* buf, size_t len, uint64_t off) const {
    size_t done = 0;
    while (done < len) {
      const ssize_t n = ::pwrite(fd_, buf + done, len - done, static_cast<off_t>(off + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        return fail(err == ENOSPC ? VIX_E_DISK_FULL : VIX_E_FILE_ERROR,
                    path_ + ": write of " + std::to_string(len - done) + " bytes at offset " +
                        std::to_string(off + done) + ": " + errno_text(err));
      }
      if (n == 0) {
        return fail(VIX_E_FILE_ERROR, path_ + ": write at offset " + std::to_string(off + done) +
                                          " made no progress");
      }
      done += static_cast<size_t>(n);
    }
    return ok();
  }

  const int fd_;
  const std::string path_;
  const uint64_t capacity_;
  const bool read_only_;
  const bool direct_;
  const uint32_t align_;  // offset/length granularity of O_DIRECT requests
  const uint32_t physical_block_;
  const std::string transport_;
  // O_DIRECT writes: shared for whole blocks, exclusive for a read-modify-write of a partial one.
  std::shared_mutex rmw_mu_;
};

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_device_node(const std::string& device_path,
                                                      const DeviceNodeOptions& options) {
  const std::string transport =
      options.transport_name.empty() ? std::string("device") : std::string(options.transport_name);
  const std::string who = transport + ": " + device_path;
  if (device_path.empty()) return fail(VIX_E_INVALID_ARG, transport + ": empty device path");

  const int access = options.read_only ? O_RDONLY : O_RDWR;
  bool direct = options.unbuffered;
  int fd = ::open(device_path.c_str(), access | O_CLOEXEC | (direct ? O_DIRECT : 0));
  if (fd < 0 && direct && errno == EINVAL) {
    // The file system under a regular file (tmpfs) has no O_DIRECT: the data is the same, only
    // the caching differs, so go on buffered.
    direct = false;
    fd = ::open(device_path.c_str(), access | O_CLOEXEC);
  }
  if (fd < 0) {
    const int err = errno;
    return fail(open_error_code(err),
                who + ": open" + (options.read_only ? "" : " read-write") + ": " + errno_text(err));
  }
  // From here on every error path closes fd.
  auto close_and_fail = [fd](Error e) {
    ::close(fd);
    return e;
  };

  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return close_and_fail(fail(VIX_E_FILE_ERROR, who + ": fstat: " + errno_text(errno)));
  }
  uint64_t size_bytes = 0;
  uint32_t io_align = static_cast<uint32_t>(kSectorSize);
  uint32_t physical_block = static_cast<uint32_t>(kSectorSize);
  if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd, BLKGETSIZE64, &size_bytes) != 0) {
      return close_and_fail(fail(VIX_E_FILE_ERROR, who + ": BLKGETSIZE64: " + errno_text(errno)));
    }
    int lbs = 0;
    if (::ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs >= 512 && lbs <= 65536) {
      io_align = static_cast<uint32_t>(lbs);
    }
    unsigned int pbs = 0;
    if (::ioctl(fd, BLKPBSZGET, &pbs) == 0 && pbs >= 512 && pbs <= 65536) physical_block = pbs;
    int ro = 0;
    if (!options.read_only && ::ioctl(fd, BLKROGET, &ro) == 0 && ro != 0) {
      return close_and_fail(
          fail(VIX_E_FILE_READ_ONLY, who + ": the device is read-only, cannot open it read-write"));
    }
  } else if (S_ISREG(st.st_mode)) {
    size_bytes = static_cast<uint64_t>(st.st_size);
    // O_DIRECT on a file follows the file system's block size; a page covers every common one.
    // A file whose end is not page-aligned would have its tail rounded past on writes: buffered.
    if (direct && size_bytes % kMemAlign != 0) {
      direct = false;
      if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_DIRECT) != 0) {
        return close_and_fail(fail(VIX_E_FILE_ERROR, who + ": fcntl: " + errno_text(errno)));
      }
    }
    if (direct) io_align = static_cast<uint32_t>(kMemAlign);
  } else {
    return close_and_fail(
        fail(VIX_E_INCORRECT_FILE_TYPE, who + ": neither a block device nor a regular file"));
  }
  if (io_align % kSectorSize != 0 || io_align > kMemAlign * 16) {
    return close_and_fail(
        fail(VIX_E_HOST_DISK_SECTORSIZE,
             who + ": unsupported logical block size " + std::to_string(io_align)));
  }

  if (size_bytes < kSectorSize) {
    // A device with no medium, or a disk still being attached, reads as size 0.
    return close_and_fail(fail(VIX_E_DISK_RAWTOOSMALL, who + ": the device is empty (" +
                                                           std::to_string(size_bytes) + " bytes)"));
  }
  uint64_t capacity_bytes = size_bytes;
  if (options.expected_capacity_bytes != 0) {
    if (size_bytes < options.expected_capacity_bytes) {
      return close_and_fail(
          fail(VIX_E_DISK_RAWTOOSMALL, who + ": the device has " + std::to_string(size_bytes) +
                                           " bytes, smaller than the disk's " +
                                           std::to_string(options.expected_capacity_bytes) +
                                           " (wrong device, or not attached yet)"));
    }
    // A LUN may be larger than the disk it backs (rounded up by the array); the disk ends where
    // the inventory says.
    capacity_bytes = options.expected_capacity_bytes;
  }
  return std::unique_ptr<BlockDevice>(
      std::make_unique<DeviceNode>(fd, device_path, capacity_bytes / kSectorSize, options.read_only,
                                   direct, io_align, physical_block, transport));
}

}  // namespace vix
