// BlockDevice: an opened disk, sector-addressed. Every transport hands one back; the VMDK engine
// is one; the read-ahead cache wraps one (through BlockDeviceWrapper). All methods are
// thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace vix {

constexpr uint64_t kSectorSize = 512;

struct SectorExtent {
  uint64_t start = 0;  // sectors
  uint64_t count = 0;  // sectors
  bool operator==(const SectorExtent&) const = default;
};

struct Geometry {
  uint32_t cylinders = 0, heads = 0, sectors = 0;
};

// What GetInfo reports, and what `vixdisk info` prints.
struct DiskInfo {
  uint64_t capacity_sectors = 0;
  Geometry bios_geometry;
  Geometry phys_geometry;
  VixDiskLibAdapterType adapter = VIXDISKLIB_ADAPTER_UNKNOWN;
  int num_links = 1;                  // base + redo logs opened
  std::string parent_file_name_hint;  // of the leaf; empty without a parent
  std::string uuid;                   // ddb.uuid, may be empty
  std::string create_type;            // descriptor createType ("monolithicSparse", ...)
  uint32_t logical_sector_size = 512;
  uint32_t physical_sector_size = 512;
};

// A piece of a read as it lies on the host, for replies that need not copy it: `bytes` bytes at
// `offset` of the open file `fd`; or, with fd -1, the bytes at `mem` (kept alive by `keep`), or
// zeros when mem is null. The FUSE daemon splices file pieces and writes memory pieces straight
// from where they are.
struct HostPiece {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t bytes = 0;
  const uint8_t* mem = nullptr;
  std::shared_ptr<const void> keep;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  virtual uint64_t capacity_sectors() const = 0;
  virtual DiskInfo info() const = 0;
  virtual bool read_only() const = 0;
  // Static name of the transport that produced this device ("file", "nbd", ...).
  virtual std::string_view transport_name() const = 0;

  // Out-of-range requests fail with VIX_E_DISK_OUTOFRANGE; buffers are count*512 bytes.
  virtual Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) = 0;
  virtual Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) = 0;
  virtual Result<void> flush() = 0;
  // Discards [sector, sector+count): afterwards the range reads back as zeros, and the device may
  // release its storage (fallocate PUNCH_HOLE semantics; nbd: NBD_CMD_WRITE_ZEROES without
  // NO_HOLE). A device that can only discard advisorily (NBD TRIM, which may leave the old bytes
  // readable) or not at all fails with VIX_E_NOT_SUPPORTED, and callers report EOPNOTSUPP. A count
  // of 0 discards nothing but fails the same way: callers use it to ask before changing anything.
  virtual Result<void> unmap(uint64_t sector, uint64_t count) {
    (void)sector, (void)count;
    return fail(VIX_E_NOT_SUPPORTED, "this disk cannot discard blocks");
  }

  // Where [sector, sector+count) lies on the host: appends pieces covering the range in order and
  // returns true; returns false, appending nothing, when it cannot say (compressed grains, a
  // network transport without a cache above it). File pieces stay valid while the device is open
  // and never reach past their file's end. Callers fall back to read().
  virtual Result<bool> map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) {
    (void)sector, (void)count, (void)out;
    return false;
  }
  // Allocated ranges inside [sector, sector+count): sorted, non-overlapping, clipped to the range,
  // at the device's native granularity (a VMDK grain). Zeroed grains and holes are not included.
  virtual Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) = 0;

  // What a transport counts of its link to the server, for stats.json's transportIo: camelCase
  // name -> count ("reconnects": how many times it re-established the link). A new counter is an
  // entry here, in its transport alone: the meter and stats.json pass every entry through.
  using LinkCounters = std::map<std::string, uint64_t>;
  virtual LinkCounters link_counters() const { return {}; }
  // The wire protocol, for a mode that can speak several ("nfc" or "nbd" under nbd and
  // nbdssl); "" when the mode's name says it all. Shown as "nbdssl (nfc)".
  virtual std::string protocol() const { return {}; }

  // The disk database (ddb.* keys of a VMDK descriptor). Devices without one return
  // VIX_E_NOT_SUPPORTED.
  virtual Result<std::map<std::string, std::string>> metadata() {
    return fail(VIX_E_NOT_SUPPORTED, "this disk has no metadata");
  }
  virtual Result<void> write_metadata(const std::string& key, const std::string& value) {
    (void)key, (void)value;
    return fail(VIX_E_NOT_SUPPORTED, "this disk's metadata cannot be written");
  }
};

// The base of a decorator (metering, read-ahead, hot-add's detach on close): forwards every
// method to the device it owns, so a decorator overrides only what it changes, and a method added
// to BlockDevice is added here too and reaches every transport through every decorator. Without
// it, a decorator that forgot a method silently answered with BlockDevice's default instead.
class BlockDeviceWrapper : public BlockDevice {
 public:
  explicit BlockDeviceWrapper(std::unique_ptr<BlockDevice> inner) : inner_(std::move(inner)) {}

  BlockDevice& inner() { return *inner_; }
  const BlockDevice& inner() const { return *inner_; }

  uint64_t capacity_sectors() const override { return inner_->capacity_sectors(); }
  DiskInfo info() const override { return inner_->info(); }
  bool read_only() const override { return inner_->read_only(); }
  std::string_view transport_name() const override { return inner_->transport_name(); }
  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override {
    return inner_->read(sector, count, buf);
  }
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override {
    return inner_->write(sector, count, buf);
  }
  Result<void> flush() override { return inner_->flush(); }
  Result<void> unmap(uint64_t sector, uint64_t count) override {
    return inner_->unmap(sector, count);
  }
  Result<bool> map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) override {
    return inner_->map_to_host(sector, count, out);
  }
  Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override {
    return inner_->allocated(sector, count);
  }
  LinkCounters link_counters() const override { return inner_->link_counters(); }
  std::string protocol() const override { return inner_->protocol(); }
  Result<std::map<std::string, std::string>> metadata() override { return inner_->metadata(); }
  Result<void> write_metadata(const std::string& key, const std::string& value) override {
    return inner_->write_metadata(key, value);
  }

 protected:
  // Protected so that a decorator can close the device before its own teardown (hot-add closes
  // the node before the disk leaves the proxy VM).
  std::unique_ptr<BlockDevice> inner_;
};

}  // namespace vix
