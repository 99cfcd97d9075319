// vix::Connection (ConnectEx/Disconnect) and vix::Disk (Open/Read/Write/.../Close): the C++ core
// under the C ABI. Local connections (no server) open VMDK files directly; remote ones hold a
// vSphere session (vsphere/session.h). A Disk owns its BlockDevice; the Connection must outlive its
// Disks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/block_device.h"
#include "common/config.h"
#include "common/result.h"
#include "transports/transport.h"
#include "vix/metered.h"
#include "vix/range_lock.h"
#include "vix/readahead.h"
#include "vsphere/session.h"

namespace vix {

class Disk;

class Connection {
 public:
  // modes: colon-separated transport list; empty means the library default. Unknown modes are
  // VIX_E_INVALID_ARG naming them.
  static Result<std::unique_ptr<Connection>> connect(const ConnectSpec& spec, bool read_only,
                                                     const std::string& snapshot_ref,
                                                     const std::string& modes);
  ~Connection();

  // flags: VIXDISKLIB_FLAG_OPEN_*. Walks the transport list; logs why each mode was skipped.
  Result<std::unique_ptr<Disk>> open(const std::string& path, uint32_t flags);
  // Opens path read-only and layers the redo log at redo_path over it: the Disk is writable,
  // writes land in the log, sectors never written read from the disk, which is never written
  // (even on a read-only connection). A missing log is created: for a local disk a child as
  // CreateChild makes one, for a remote disk a sparse log naming the datastore path as its
  // parent. An existing log is reused (one kept by an earlier mount) if it belongs to path.
  Result<std::unique_ptr<Disk>> open_with_redo_log(const std::string& path, uint32_t flags,
                                                   const std::string& redo_path);
  Result<void> create(const std::string& path, const VixDiskLibCreateParams& params);

  const ConnectSpec& spec() const { return spec_; }
  bool read_only() const { return read_only_; }
  const std::vector<std::string>& modes() const { return modes_; }
  int open_disks() const { return open_disks_.load(); }
  const std::string& snapshot() const { return snapshot_; }
  // The library's config as this connection sees it (ConnectSpec::config_scope applied).
  const Config& config() const { return config_; }
  // The vSphere session of a remote connection; nullptr for a local one.
  RemoteSession* remote() const { return remote_.get(); }
  // Logs out of the server now (Disconnect); also done by the destructor.
  Result<void> disconnect();

 private:
  Connection(ConnectSpec spec, bool read_only, std::string snapshot,
             std::vector<std::string> modes);
  // Puts the read-ahead cache over dev when the config asks for it and makes the Disk, telling
  // it where the layers of its stack are.
  Result<std::unique_ptr<Disk>> finish_stack(const std::string& path, uint32_t flags,
                                             std::unique_ptr<BlockDevice> dev,
                                             const MeteredDevice* meter);
  ConnectSpec spec_;
  bool read_only_;
  std::string snapshot_;
  std::vector<std::string> modes_;
  Config config_;
  std::atomic<int> open_disks_{0};
  std::unique_ptr<RemoteSession> remote_;
  friend class Disk;
};

// VixDiskLib_Cleanup: undoes what interrupted sessions of this library left behind for the
// server of `spec` (disks hot-added to a proxy VM and not removed; with spec.session, also the
// snapshots that dead vixfs / vixdisk backup processes of this host made, leftovers.h). The
// file, https and nbd transports leave nothing behind.
Result<CleanupResult> cleanup(const ConnectSpec& spec);

// VixDiskLib_PrepareForAccess / EndAccess (access.cc): block Storage vMotion (RelocateVM_Task)
// of spec's VM for `identity` while its disks are read, and unblock it. Against a standalone
// ESXi there is nothing that could move the disks: a log line, and ok. Local specs: ok.
Result<void> prepare_for_access(const ConnectSpec& spec, const std::string& identity);
Result<void> end_access(const ConnectSpec& spec, const std::string& identity);

using CompletionFn = std::function<void(VixError)>;

class Disk {
 public:
  Disk(Connection* conn, std::string path, uint32_t flags, std::unique_ptr<BlockDevice> dev);
  ~Disk();  // waits for outstanding async I/O

  BlockDevice& device() { return *dev_; }
  const std::string& path() const { return path_; }
  uint32_t flags() const { return flags_; }
  bool read_only() const;
  std::string_view transport_name() const { return dev_->transport_name(); }
  DiskInfo info() const { return dev_->info(); }
  // What reached the transport (under any cache): requests, bytes, errors, latency.
  IoSnapshot transport_stats() const {
    return transport_meter_ ? transport_meter_->snapshot() : IoSnapshot{};
  }

  // The read-ahead cache's counters; nullopt when the cache is off for this disk.
  std::optional<ReadaheadStats> cache_stats() const {
    return cache_ ? std::optional<ReadaheadStats>(cache_->snapshot()) : std::nullopt;
  }

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf);
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf);
  // Byte-addressed I/O, for callers that think in files (the FUSE daemon). A partial sector at
  // either edge is read, changed and written back; edges are read from under the read-ahead
  // cache (through it, each would load a whole chunk that the write then drops). Every pwrite
  // holds its sectors in a range lock, aligned ones too: an aligned write landing between another
  // writer's read and write-back of a shared sector would be undone.
  Result<void> pread(uint8_t* buf, uint64_t length, uint64_t offset);
  Result<void> pwrite(const uint8_t* buf, uint64_t length, uint64_t offset);
  // Afterwards [offset, offset+length) reads as zeros: whole sectors are discarded (unmap),
  // partial edge sectors written with zeros. VIX_E_NOT_SUPPORTED, with nothing changed, when the
  // device cannot discard to zeros.
  Result<void> zero_range(uint64_t offset, uint64_t length);
  // BlockDevice::map_to_host, range-checked: where the bytes lie in local files, when they all
  // do and no cache sits in between.
  Result<bool> map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out);
  Result<void> flush();
  // BlockDevice::unmap: the range reads back as zeros afterwards; VIX_E_NOT_SUPPORTED when the
  // device cannot promise that (asked with count 0 as well).
  Result<void> unmap(uint64_t sector, uint64_t count);
  // Queues the I/O on the library's workers; done is called exactly once, from any thread.
  Result<void> read_async(uint64_t sector, uint64_t count, uint8_t* buf, CompletionFn done);
  Result<void> write_async(uint64_t sector, uint64_t count, const uint8_t* buf, CompletionFn done);
  // Returns once every callback of this disk's async I/O has returned. Must not be called from
  // one of this disk's own callbacks (it would wait for itself).
  void wait();

  // VixDiskLib_QueryAllocatedBlocks semantics: chunk-granular, sorted, inside the range.
  Result<std::vector<SectorExtent>> query_allocated(uint64_t sector, uint64_t count,
                                                    uint64_t chunk);
  Result<std::map<std::string, std::string>> metadata() { return dev_->metadata(); }
  Result<void> write_metadata(const std::string& key, const std::string& value);
  Result<void> create_child(const std::string& child_path, VixDiskLibDiskType type);

 private:
  // Counts the job in async_pending_ and queues it on the library's workers.
  Result<void> submit(std::function<Result<void>()> io, CompletionFn done);

  Connection* conn_;
  std::string path_;
  uint32_t flags_;
  std::unique_ptr<BlockDevice> dev_;
  // Layers of dev_'s stack that Connection::open recorded as it built it, so nobody has to peel
  // the stack to find them: the meter over the transport, the cache (null when off) and the
  // device right under the cache (dev_ itself without one).
  const MeteredDevice* transport_meter_ = nullptr;
  const ReadaheadDevice* cache_ = nullptr;
  BlockDevice* uncached_ = nullptr;
  // pwrite's work, for a caller that holds the range lock of the sectors it touches.
  Result<void> write_bytes_locked(const uint8_t* buf, uint64_t length, uint64_t offset);
  // Held over the sectors a pwrite or zero_range touches: one edge read-modify-write at a time
  // per sector.
  RangeLock range_lock_;
  friend class Connection;
  std::mutex async_mu_;
  std::condition_variable async_cv_;
  int async_pending_ = 0;
};

}  // namespace vix
