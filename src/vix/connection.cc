#include "vix/connection.h"
#include "common/log.h"

#include <filesystem>

#include "common/byte_source.h"
#include "transports/hotadd.h"
#include "transports/transport.h"
#include "vix/leftovers.h"
#include "vix/library.h"
#include "vix/metered.h"
#include "vix/readahead.h"
#include "vmdk/vmdk.h"
#include "vsphere/session.h"

namespace vix {

Connection::Connection(ConnectSpec spec, bool read_only, std::string snapshot,
                       std::vector<std::string> modes)
    : spec_(std::move(spec)),
      read_only_(read_only),
      snapshot_(std::move(snapshot)),
      modes_(std::move(modes)) {}

Connection::~Connection() {
  // The C ABI refuses to disconnect while disks are open; reaching here with open disks is a bug
  // of a C++ caller, worth a loud line rather than a silent use-after-free later.
  if (open_disks_.load() != 0) {
    log::error("connection destroyed with " + std::to_string(open_disks_.load()) +
               " disk(s) still open");
  }
}

// vixfs.server.NAME.* sections: NAME is the caller's scope (vixfs's server alias), else the
// server's host as the connection names it, so VDDK clients get per-host keys too.
static std::string config_scope_of(const ConnectSpec& spec) {
  return spec.config_scope.empty() ? spec.server : spec.config_scope;
}

Result<CleanupResult> cleanup(const ConnectSpec& spec) {
  Library* lib = Library::get();
  if (lib == nullptr) return fail(VIX_E_DISK_NOINIT, "Cleanup: library not initialized");
  // hotadd is the one mode that leaves state on a server (disks attached to the proxy VM).
  VIX_ASSIGN_OR_RETURN(CleanupResult r,
                       hotadd::cleanup(spec, lib->config().scoped(config_scope_of(spec))));
  // The tools' snapshots of dead processes, where the caller's session is at hand (vixfs at
  // mount and unmount); `vixdisk cleanup` logs in for them itself.
  if (spec.session) {
    for (const Leftover& l :
         remove_dead_snapshots(spec.session->client(), *spec.session->inventory(), false)) {
      (l.removed ? r.cleaned_up : r.remaining) += 1;
    }
  }
  return r;
}

Result<void> Connection::disconnect() {
  if (!remote_) return ok();
  return remote_->logout();
}

Result<std::unique_ptr<Connection>> Connection::connect(const ConnectSpec& spec, bool read_only,
                                                        const std::string& snapshot_ref,
                                                        const std::string& modes) {
  Library* lib = Library::get();
  if (lib == nullptr) return fail(VIX_E_DISK_NOINIT, "ConnectEx: library not initialized");
  VIX_ASSIGN_OR_RETURN(std::vector<std::string> mode_list, parse_transport_modes(modes));
  if (!spec.is_local()) {
    std::unique_ptr<Connection> conn(
        new Connection(spec, read_only, snapshot_ref, std::move(mode_list)));
    conn->config_ = lib->config().scoped(config_scope_of(spec));
    VIX_ASSIGN_OR_RETURN(conn->remote_, RemoteSession::open(spec, snapshot_ref, conn->config_));
    return conn;
  }
  if (!snapshot_ref.empty()) {
    log::info("ConnectEx: snapshot " + snapshot_ref + " ignored for a local connection");
  }
  log::debug(std::string("ConnectEx: local connection, ") +
             (read_only ? "read-only" : "read-write"));
  std::unique_ptr<Connection> conn(
      new Connection(spec, read_only, snapshot_ref, std::move(mode_list)));
  conn->config_ = lib->config().scoped(config_scope_of(spec));
  return conn;
}

Result<std::unique_ptr<Disk>> Connection::finish_stack(const std::string& path, uint32_t flags,
                                                       std::unique_ptr<BlockDevice> dev,
                                                       const MeteredDevice* meter) {
  BlockDevice* uncached = dev.get();
  ReadaheadDevice* cache = nullptr;
  VIX_ASSIGN_OR_RETURN(dev, wrap_readahead_if_enabled(std::move(dev), config_, &cache));
  auto disk = std::make_unique<Disk>(this, path, flags, std::move(dev));
  disk->transport_meter_ = meter;
  disk->cache_ = cache;
  disk->uncached_ = uncached;
  return disk;
}

Result<std::unique_ptr<Disk>> Connection::open(const std::string& path, uint32_t flags) {
  Library* lib = Library::get();
  if (lib == nullptr) return fail(VIX_E_DISK_NOINIT, "Open: library not initialized");
  if (path.empty()) return fail(VIX_E_INVALID_ARG, "Open: empty disk path");
  const bool ro = read_only_ || (flags & VIXDISKLIB_FLAG_OPEN_READ_ONLY) != 0;
  if (ro) flags |= VIXDISKLIB_FLAG_OPEN_READ_ONLY;
  TransportContext ctx{spec_, ro, snapshot_, config_, remote_.get()};
  VIX_ASSIGN_OR_RETURN(std::unique_ptr<BlockDevice> dev,
                       open_through_chain(modes_, ctx, path, flags));
  auto metered = std::make_unique<MeteredDevice>(std::move(dev));
  const MeteredDevice* meter = metered.get();
  log::debug(path + ": opened through " + std::string(metered->transport_name()) +
             (ro ? " (read-only)" : " (read-write)"));
  return finish_stack(path, flags, std::move(metered), meter);
}

Result<std::unique_ptr<Disk>> Connection::open_with_redo_log(const std::string& path,
                                                             uint32_t flags,
                                                             const std::string& redo_path) {
  Library* lib = Library::get();
  if (lib == nullptr) return fail(VIX_E_DISK_NOINIT, "Open: library not initialized");
  if (path.empty() || redo_path.empty()) {
    return fail(VIX_E_INVALID_ARG, "Open: empty disk or redo log path");
  }
  flags &= ~static_cast<uint32_t>(VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  auto opener = make_local_opener();
  std::error_code ec;
  const bool reuse = std::filesystem::exists(redo_path, ec);
  std::unique_ptr<BlockDevice> dev;
  const MeteredDevice* meter = nullptr;
  if (spec_.is_local()) {
    // A local disk's log is an ordinary child: the engine opens the whole chain and checks the
    // parent's CID, so a kept log is also readable by qemu-img and VMware's tools.
    if (!reuse)
      VIX_TRY(vmdk::create_child(*opener, path, redo_path, VIXDISKLIB_DISK_MONOLITHIC_SPARSE));
    vmdk::OpenOptions o;
    o.read_only = false;
    VIX_ASSIGN_OR_RETURN(dev, vmdk::open(*opener, redo_path, o));
    const std::string parent = opener->resolve(redo_path, dev->info().parent_file_name_hint);
    if (std::filesystem::weakly_canonical(parent, ec) !=
        std::filesystem::weakly_canonical(path, ec)) {
      return fail(VIX_E_DISK_INVALIDCHAIN,
                  redo_path + ": this redo log belongs to " + parent + ", not to " + path);
    }
    auto metered = std::make_unique<MeteredDevice>(std::move(dev));
    meter = metered.get();
    dev = std::move(metered);
  } else {
    TransportContext ctx{spec_, true, snapshot_, config_, remote_.get()};
    VIX_ASSIGN_OR_RETURN(
        dev, open_through_chain(modes_, ctx, path, flags | VIXDISKLIB_FLAG_OPEN_READ_ONLY));
    auto metered = std::make_unique<MeteredDevice>(std::move(dev));
    meter = metered.get();
    dev = std::move(metered);
    if (!reuse) VIX_TRY(vmdk::create_redo_log(*opener, redo_path, dev->capacity_sectors(), path));
    VIX_ASSIGN_OR_RETURN(dev, vmdk::open_redo_log(*opener, redo_path, std::move(dev)));
    if (dev->info().parent_file_name_hint != path) {
      return fail(VIX_E_DISK_INVALIDCHAIN, redo_path + ": this redo log belongs to " +
                                               dev->info().parent_file_name_hint + ", not to " +
                                               path);
    }
  }
  log::info(path + ": " + (reuse ? "reusing" : "writing to") + " redo log " + redo_path +
            " (the disk itself is read only, through " + std::string(dev->transport_name()) + ")");
  return finish_stack(path, flags, std::move(dev), meter);
}

Result<void> Connection::create(const std::string& path, const VixDiskLibCreateParams& params) {
  if (!spec_.is_local()) {
    return fail(VIX_E_NOT_SUPPORTED, path + ": Create works on local disks only (as in VDDK)");
  }
  if (read_only_) return fail(VIX_E_FILE_READ_ONLY, path + ": Create on a read-only connection");
  if (path.empty()) return fail(VIX_E_INVALID_ARG, "Create: empty disk path");
  if (params.capacity == 0) return fail(VIX_E_INVALID_ARG, path + ": Create with capacity 0");
  for (uint32_t size : {params.logicalSectorSize, params.physicalSectorSize}) {
    if (size != 0 && size != kSectorSize) {
      return fail(VIX_E_NOT_SUPPORTED, path + ": sector size " + std::to_string(size) +
                                           " (only 512-byte sectors are supported)");
    }
  }
  vmdk::CreateOptions options;
  options.type = params.diskType;
  options.adapter = params.adapterType;
  if (params.hwVersion != 0) options.hw_version = params.hwVersion;
  options.capacity_sectors = params.capacity;
  auto opener = make_local_opener();
  return vmdk::create(*opener, path, options);
}

}  // namespace vix
