// One disk shown as a raw image file: opened lazily on the first open(), one vix::Disk shared by
// every handle, closed on the last release. Size and allocation are learned once (on lookup) and
// cached for the mount's life; this mount's own writes update the cached allocation map. A
// writable file (its write policy allows it) opens its disk read-write for every handle, since
// the one vix::Disk serves readers and writers alike.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/block_device.h"
#include "common/result.h"
#include "vix/allocation_map.h"
#include "vix/connection.h"
#include "vix/readahead.h"

namespace vixfs {

class DiskFile {
 public:
  // capacity_bytes: what the listing said (the disk's own capacity wins once it is open).
  DiskFile(vix::Connection* conn, std::string path, std::string name, uint64_t capacity_bytes);
  // A connection made on first use (remote disks: connecting logs in, so only an open does it).
  using ConnectionSource = std::function<vix::Result<vix::Connection*>()>;
  DiskFile(ConnectionSource source, std::string path, std::string name, uint64_t capacity_bytes);
  // Called each time the disk is opened, with the winning transport and the disk's own
  // capacity; under the file's lock, so it must not call back into this DiskFile.
  void set_on_open(std::function<void(const std::string&, uint64_t)> fn) {
    on_open_ = std::move(fn);
  }

  // "" when writes are allowed, else why not ("the VM is poweredOn"). Asked at each open and
  // write, so a policy that follows the inventory takes effect without a remount. Unset: never
  // writable.
  using WritePolicy = std::function<std::string()>;
  void set_write_policy(WritePolicy policy);

  // Writes go to a local redo log at `path` instead of the disk (a snapshot's disk, which is
  // never written). The log is made at the first open for writing, or when it already exists
  // (kept by an earlier mount); until then readers read the disk alone. close_now() deletes it
  // unless keep. Needs a write policy that allows writes.
  struct RedoLog {
    std::string path;
    bool keep = false;
  };
  void set_redo_log(RedoLog log);

  // A file whose snapshot is being removed: retire() forgets the connection it opened through
  // (which goes with the snapshot) and refuses opens from then on, saying `why`; false, with
  // nothing changed, while the file is open. unretire() undoes it when the removal failed.
  bool retire(const std::string& why);
  void unretire();

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  // The policy allows writes and the disk, when it was opened, did not turn out read-only (the
  // https transport, a read-only connection, a streamOptimized disk).
  bool writable() const;
  uint64_t size() const;
  // 512-byte blocks allocated (0 until learn_allocation ran); never below the truth once learned.
  uint64_t allocated_blocks() const;

  // Opens the disk's metadata and caches its allocation map; later calls return at once. A
  // failure is logged and leaves the file looking fully allocated (the safe side for cp/tar).
  void learn_allocation();

  // FUSE open/release: -errno on failure; for_write refused with -EROFS and a log line why.
  int acquire(bool for_write = false);
  void release();
  bool is_open() const;

  // Bytes read into buf (short at end of file), or -errno (a log line says why).
  ssize_t read(uint64_t offset, size_t length, uint8_t* buf);
  // The read as pieces of where its bytes already are (BlockDevice::map_to_host: local files,
  // zeros, read-ahead cache chunks), for a reply that need not copy them: the bytes covered (short
  // at end of file), 0 when the caller should read() instead (partial sectors, compressed grains,
  // a network disk without the cache), or -errno. Counted as a read, and in mapped_bytes. Every
  // piece keeps alive what it points into (file pieces: the disk), so the caller may use them
  // after a concurrent swap or close.
  ssize_t map_read(uint64_t offset, size_t length, std::vector<vix::HostPiece>* pieces);
  // Bytes written, or -errno (a log line says why). Partial edge sectors are read, changed and
  // written back under a range lock; whole sectors go straight from buf. A write that starts at
  // or past the end is -EFBIG; one that crosses the end is cut short there.
  ssize_t write(uint64_t offset, size_t length, const uint8_t* buf);
  // fallocate PUNCH_HOLE / ZERO_RANGE: afterwards [offset, offset+length) reads as zeros (the
  // range is cut at the end of the file). Whole sectors are discarded (BlockDevice::unmap), the
  // partial sectors at either edge written as zeros. 0 or -errno: -EROFS as for write,
  // -EOPNOTSUPP when the device cannot discard to zeros (nothing is changed then).
  int punch_hole(uint64_t offset, uint64_t length);
  // VixDiskLib_Flush: on success what was written is durable at the source. only_if_dirty skips
  // it when nothing was written since the last flush (close(2) of a handle).
  int flush(bool only_if_dirty);
  // SEEK_DATA / SEEK_HOLE from the cached map; -ENXIO at or past the end.
  off_t seek(off_t offset, int whence);

  // Unmount: drops the shared disk whatever the handle count.
  void close_now();

  // For stats.json: what this file served and what reached its transport, over the mount's life
  // (disks closed and opened again included).
  struct Stats {
    std::string transport;  // "" until first opened
    uint64_t reads = 0, bytes = 0, errors = 0;
    uint64_t mapped_bytes = 0;  // of bytes: replied from where they were, by map_read
    uint64_t writes = 0, bytes_written = 0, flushes = 0;
    vix::IoSnapshot transport_io;
    bool cached = false;  // the read-ahead cache was on when last opened
    vix::ReadaheadStats cache;
  };
  Stats stats() const;

 private:
  // Opens (or reuses) the disk; the caller holds mu_. for_write: a redo-log file opens over its
  // log even when the log does not exist yet.
  vix::Result<std::shared_ptr<vix::Disk>> open_locked(bool for_write = false);
  // The open disk, with *length cut at the end of the file; nullptr with *rc = 0 when there is
  // nothing to read, -EBADF when no disk is open.
  std::shared_ptr<vix::Disk> disk_for_read(uint64_t offset, size_t* length, ssize_t* rc);
  // Counts a finished read in the stats: its length, or -EIO with a log line saying why.
  ssize_t count_read(uint64_t offset, size_t length, const vix::Result<void>& r);
  // The redo log is (or is to be) used by the next open; the caller holds mu_.
  bool use_redo_log_locked(bool for_write) const;
  // Drops disk_, keeping its transport counters; the caller holds mu_.
  void drop_disk_locked();
  // Why this file cannot be written now ("" when it can); the caller holds mu_.
  std::string read_only_reason_locked() const;
  // The open disk and its size for a change (`what`: "write", "punch hole"): 0, or -EROFS with
  // a log line why, or -EBADF when no disk is open.
  int disk_for_change(const char* what, std::shared_ptr<vix::Disk>* disk, uint64_t* size);

  vix::Connection* conn_;
  ConnectionSource source_;
  std::string retired_;  // why opens are refused ("" while the file may open)
  std::function<void(const std::string&, uint64_t)> on_open_;
  std::string path_, name_;
  mutable std::mutex mu_;
  uint64_t capacity_bytes_;
  std::shared_ptr<vix::Disk> disk_;
  int users_ = 0;
  std::optional<vix::AllocationMap> allocation_;  // set by learn_allocation
  std::string transport_;                         // of the last open
  vix::IoSnapshot closed_io_;                     // transport counters of disks already closed
  bool cached_ = false;
  vix::ReadaheadStats closed_cache_;  // cache counters of disks already closed
  std::atomic<uint64_t> reads_{0}, bytes_{0}, errors_{0}, mapped_bytes_{0};
  WritePolicy policy_;
  std::string device_read_only_;  // why the disk, as last opened, refuses writes ("" if not)
  bool opened_rw_ = false;        // disk_ is open read-write
  std::optional<RedoLog> redo_;
  bool redo_made_ = false;  // this mount wrote the redo log into being (close_now removes it)
  std::atomic<bool> dirty_{false};
  std::atomic<uint64_t> writes_{0}, bytes_written_{0}, flushes_{0};
};

}  // namespace vixfs
