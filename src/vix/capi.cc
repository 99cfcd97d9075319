// The C ABI (libvixDiskLib.so.8): thin wrappers over the C++ core. Every entry point catches
// everything (no exception crosses into C), validates handles against the live set, and turns a
// vix::Error into its VixError code after remembering the message for GetErrorText.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_set>

#include "common/log.h"
#include "transports/transport.h"
#include "vix/capi_support.h"
#include "vix/connection.h"
#include "vix/errors.h"
#include "vix/library.h"
#include "vixDiskLib.h"

struct VixDiskLibConnectParam {
  std::unique_ptr<vix::Connection> conn;
};

struct VixDiskLibHandleStruct {
  std::unique_ptr<vix::Disk> disk;
};

namespace {

using vix::Error;
using vix::fail;
using vix::Library;

// Live handles, so a stale or foreign pointer is an error instead of a crash.
struct Registry {
  std::mutex mu;
  std::unordered_set<const void*> live;
};

Registry& registry() {
  static Registry r;
  return r;
}

void register_handle(const void* h) {
  std::lock_guard lock(registry().mu);
  registry().live.insert(h);
}

bool unregister_handle(const void* h) {
  std::lock_guard lock(registry().mu);
  return registry().live.erase(h) != 0;
}

bool is_live(const void* h) {
  std::lock_guard lock(registry().mu);
  return registry().live.count(h) != 0;
}

// Remembers the detail for GetErrorText (on this thread) and logs one line.
VixError report(const char* fn, const Error& err) {
  Error full{err.code, std::string(fn) + ": " + err.message};
  vix::note_error_detail(full);
  const uint32_t code = VIX_ERROR_CODE(err.code);
  // Lookups that callers make to size buffers or probe keys are routine, not failures.
  if (code == VIX_E_BUFFER_TOOSMALL || code == VIX_E_DISK_KEY_NOTFOUND) {
    vix::log::debug(full.message);
  } else {
    vix::log::info(full.message);
  }
  return err.code;
}

VixError report(const char* fn, const vix::Result<void>& r) {
  return r.ok() ? VixError{VIX_OK} : report(fn, r.error());
}

// The VDDK functions vixfs does not implement say so by name (never a silent success).
VixError unsupported(const char* fn) {
  return report(fn, fail(VIX_E_NOT_SUPPORTED, std::string(fn) + " is not supported by vixfs"));
}

VixError not_initialized(const char* fn) {
  return report(fn, fail(VIX_E_DISK_NOINIT, "library not initialized"));
}

// Runs body (returning VixError) with every exception turned into an error code.
template <class F>
VixError guarded(const char* fn, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    try {
      return report(fn, fail(VIX_E_OUT_OF_MEMORY, "out of memory"));
    } catch (...) {
      return VIX_E_OUT_OF_MEMORY;
    }
  } catch (const std::exception& e) {
    try {
      return report(fn, fail(VIX_E_FAIL, std::string("internal error: ") + e.what()));
    } catch (...) {
      return VIX_E_FAIL;
    }
  } catch (...) {
    return VIX_E_FAIL;
  }
}

// Library initialised and handle live: otherwise the error to return.
template <class H>
VixError check_handle(const char* fn, H h, const char* what) {
  if (Library::get() == nullptr) return not_initialized(fn);
  if (h == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, std::string("NULL ") + what));
  if (!is_live(h)) {
    return report(fn, fail(VIX_E_INVALID_ARG, std::string(what) + " is not open (closed twice, "
                                                                  "or not from this library)"));
  }
  return VIX_OK;
}

void emit_to(VixDiskLibGenericLogFunc* fn, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fn(fmt, ap);
  va_end(ap);
}

VixError init(const char* fn, VixDiskLibGenericLogFunc* log, VixDiskLibGenericLogFunc* warn,
              VixDiskLibGenericLogFunc* panic, const char* lib_dir, const char* config_file) {
  return guarded(fn, [&]() -> VixError {
    auto r = Library::init(vix::LogCallbacks{log, warn, panic}, lib_dir ? lib_dir : "",
                           config_file ? config_file : "");
    if (r.ok()) return VIX_OK;
    // No logger exists when init fails, yet the reason (a malformed config line...) must show.
    if (warn) {
      emit_to(warn, "%s: %s\n", fn, r.error().message.c_str());
    } else {
      fprintf(stderr, "vixfs: %s: %s\n", fn, r.error().message.c_str());
    }
    return report(fn, r.error());
  });
}

VixError progress_done(VixDiskLibProgressFunc progress, void* data) {
  if (progress) progress(data, 100);
  return VIX_OK;
}

}  // namespace

extern "C" {

VixError VixDiskLib_InitEx(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc* log,
                           VixDiskLibGenericLogFunc* warning, VixDiskLibGenericLogFunc* panic,
                           const char* libDir, const char* configFile) {
  (void)majorVersion, (void)minorVersion;  // every client version gets the same (7.0) behaviour
  return init("VixDiskLib_InitEx", log, warning, panic, libDir, configFile);
}

VixError VixDiskLib_Init(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc* log,
                         VixDiskLibGenericLogFunc* warning, VixDiskLibGenericLogFunc* panic,
                         const char* libDir) {
  (void)majorVersion, (void)minorVersion;
  return init("VixDiskLib_Init", log, warning, panic, libDir, nullptr);
}

void VixDiskLib_Exit(void) {
  try {
    Library::exit();
  } catch (...) {
  }
}

const char* VixDiskLib_ListTransportModes(void) {
  try {
    if (Library::get() == nullptr) return nullptr;
    return vix::supported_transport_modes();
  } catch (...) {
    return nullptr;
  }
}

char* VixDiskLib_GetErrorText(VixError err, const char* locale) {
  (void)locale;  // English only, as VDDK (which requires NULL)
  try {
    return strdup(vix::error_text(err).c_str());
  } catch (...) {
    return nullptr;
  }
}

void VixDiskLib_FreeErrorText(char* errMsg) {
  free(errMsg);
}

VixDiskLibConnectParams* VixDiskLib_AllocateConnectParams(void) {
  return static_cast<VixDiskLibConnectParams*>(calloc(1, sizeof(VixDiskLibConnectParams)));
}

void VixDiskLib_FreeConnectParams(VixDiskLibConnectParams* connectParams) {
  vix::capi::free_connect_params(connectParams);
}

VixError VixDiskLib_GetConnectParams(const VixDiskLibConnection connection,
                                     VixDiskLibConnectParams** connectParams) {
  const char* fn = "VixDiskLib_GetConnectParams";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    if (connectParams == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL connectParams"));
    *connectParams = vix::capi::params_from_spec(connection->conn->spec());
    if (*connectParams == nullptr) return report(fn, fail(VIX_E_OUT_OF_MEMORY, "out of memory"));
    return VIX_OK;
  });
}

VixError VixDiskLib_ConnectEx(const VixDiskLibConnectParams* connectParams, Bool readOnly,
                              const char* snapshotRef, const char* transportModes,
                              VixDiskLibConnection* connection) {
  const char* fn = "VixDiskLib_ConnectEx";
  return guarded(fn, [&]() -> VixError {
    if (Library::get() == nullptr) return not_initialized(fn);
    if (connection == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL connection"));
    *connection = nullptr;
    auto conn = vix::Connection::connect(vix::capi::spec_from_params(connectParams), readOnly != 0,
                                         snapshotRef ? snapshotRef : "",
                                         transportModes ? transportModes : "");
    if (!conn.ok()) return report(fn, conn.error());
    auto* h = new VixDiskLibConnectParam{std::move(conn).value()};
    register_handle(h);
    *connection = h;
    return VIX_OK;
  });
}

VixError VixDiskLib_Connect(const VixDiskLibConnectParams* connectParams,
                            VixDiskLibConnection* connection) {
  return VixDiskLib_ConnectEx(connectParams, FALSE, nullptr, nullptr, connection);
}

VixError VixDiskLib_Disconnect(VixDiskLibConnection connection) {
  const char* fn = "VixDiskLib_Disconnect";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    // Disks keep a pointer to their connection; VDDK also wants them closed first.
    if (int n = connection->conn->open_disks(); n != 0) {
      return report(fn, fail(VIX_E_OBJECT_IS_BUSY,
                             std::to_string(n) + " disk(s) of this connection are still open"));
    }
    if (!unregister_handle(connection)) {
      return report(fn, fail(VIX_E_INVALID_ARG, "connection is not open"));
    }
    delete connection;
    return VIX_OK;
  });
}

VixError VixDiskLib_Cleanup(const VixDiskLibConnectParams* connectParams, uint32* numCleanedUp,
                            uint32* numRemaining) {
  const char* fn = "VixDiskLib_Cleanup";
  return guarded(fn, [&]() -> VixError {
    if (numCleanedUp) *numCleanedUp = 0;
    if (numRemaining) *numRemaining = 0;
    if (Library::get() == nullptr) return not_initialized(fn);
    auto r = vix::cleanup(vix::capi::spec_from_params(connectParams));
    if (!r.ok()) return report(fn, std::move(r).error());
    if (numCleanedUp) *numCleanedUp = r->cleaned_up;
    if (numRemaining) *numRemaining = r->remaining;
    return VIX_OK;
  });
}

// PrepareForAccess/EndAccess ask vCenter to block (and unblock) Storage vMotion of a VM while
// its disks are read (vix/access.cc); a local disk has no vCenter that could move it.
VixError VixDiskLib_PrepareForAccess(const VixDiskLibConnectParams* connectParams,
                                     const char* identity) {
  const char* fn = "VixDiskLib_PrepareForAccess";
  return guarded(fn, [&]() -> VixError {
    if (Library::get() == nullptr) return not_initialized(fn);
    if (identity == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL identity"));
    auto done = vix::prepare_for_access(vix::capi::spec_from_params(connectParams), identity);
    return done.ok() ? VixError{VIX_OK} : report(fn, done.error());
  });
}

VixError VixDiskLib_EndAccess(const VixDiskLibConnectParams* connectParams, const char* identity) {
  const char* fn = "VixDiskLib_EndAccess";
  return guarded(fn, [&]() -> VixError {
    if (Library::get() == nullptr) return not_initialized(fn);
    if (identity == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL identity"));
    auto done = vix::end_access(vix::capi::spec_from_params(connectParams), identity);
    return done.ok() ? VixError{VIX_OK} : report(fn, done.error());
  });
}

VixError VixDiskLib_Open(const VixDiskLibConnection connection, const char* path, uint32 flags,
                         VixDiskLibHandle* diskHandle) {
  const char* fn = "VixDiskLib_Open";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    if (diskHandle == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL diskHandle"));
    *diskHandle = nullptr;
    if (path == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL path"));
    auto disk = connection->conn->open(path, flags);
    if (!disk.ok()) return report(fn, disk.error());
    auto* h = new VixDiskLibHandleStruct{std::move(disk).value()};
    register_handle(h);
    *diskHandle = h;
    return VIX_OK;
  });
}

VixError VixDiskLib_Close(VixDiskLibHandle diskHandle) {
  const char* fn = "VixDiskLib_Close";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (!unregister_handle(diskHandle)) {
      return report(fn, fail(VIX_E_INVALID_ARG, "disk handle is not open"));
    }
    // Outstanding async writes complete before the flush that makes them durable.
    diskHandle->disk->wait();
    auto flushed = diskHandle->disk->flush();
    delete diskHandle;
    return report(fn, flushed);
  });
}

const char* VixDiskLib_GetTransportMode(VixDiskLibHandle diskHandle) {
  try {
    if (Library::get() == nullptr || diskHandle == nullptr || !is_live(diskHandle)) {
      return "unknown";
    }
    // A string that outlives the handle: the mode table's literal.
    return vix::transport_static_name(diskHandle->disk->transport_name());
  } catch (...) {
    return "unknown";
  }
}

VixError VixDiskLib_GetInfo(VixDiskLibHandle diskHandle, VixDiskLibInfo** info) {
  const char* fn = "VixDiskLib_GetInfo";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (info == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL info"));
    *info = vix::capi::make_info(diskHandle->disk->info());
    if (*info == nullptr) return report(fn, fail(VIX_E_OUT_OF_MEMORY, "out of memory"));
    return VIX_OK;
  });
}

void VixDiskLib_FreeInfo(VixDiskLibInfo* info) {
  vix::capi::free_info(info);
}

VixError VixDiskLib_Read(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                         VixDiskLibSectorType numSectors, uint8* readBuffer) {
  const char* fn = "VixDiskLib_Read";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    return report(fn, diskHandle->disk->read(startSector, numSectors, readBuffer));
  });
}

VixError VixDiskLib_Write(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                          VixDiskLibSectorType numSectors, const uint8* writeBuffer) {
  const char* fn = "VixDiskLib_Write";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    return report(fn, diskHandle->disk->write(startSector, numSectors, writeBuffer));
  });
}

VixError VixDiskLib_ReadAsync(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                              VixDiskLibSectorType numSectors, uint8* readBuffer,
                              VixDiskLibCompletionCB callback, void* callbackData) {
  const char* fn = "VixDiskLib_ReadAsync";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (callback == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL callback"));
    auto r = diskHandle->disk->read_async(
        startSector, numSectors, readBuffer,
        [callback, callbackData](VixError code) { callback(callbackData, code); });
    return r.ok() ? VixError{VIX_ASYNC} : report(fn, r.error());
  });
}

VixError VixDiskLib_WriteAsync(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                               VixDiskLibSectorType numSectors, const uint8* writeBuffer,
                               VixDiskLibCompletionCB callback, void* callbackData) {
  const char* fn = "VixDiskLib_WriteAsync";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (callback == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL callback"));
    auto r = diskHandle->disk->write_async(
        startSector, numSectors, writeBuffer,
        [callback, callbackData](VixError code) { callback(callbackData, code); });
    return r.ok() ? VixError{VIX_ASYNC} : report(fn, r.error());
  });
}

VixError VixDiskLib_Wait(VixDiskLibHandle diskHandle) {
  const char* fn = "VixDiskLib_Wait";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    diskHandle->disk->wait();
    return VIX_OK;
  });
}

VixError VixDiskLib_Flush(VixDiskLibHandle diskHandle) {
  const char* fn = "VixDiskLib_Flush";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    return report(fn, diskHandle->disk->flush());
  });
}

VixError VixDiskLib_QueryAllocatedBlocks(VixDiskLibHandle diskHandle,
                                         VixDiskLibSectorType startSector,
                                         VixDiskLibSectorType numSectors,
                                         VixDiskLibSectorType chunkSize,
                                         VixDiskLibBlockList** blockList) {
  const char* fn = "VixDiskLib_QueryAllocatedBlocks";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (blockList == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL blockList"));
    *blockList = nullptr;
    auto extents = diskHandle->disk->query_allocated(startSector, numSectors, chunkSize);
    if (!extents.ok()) return report(fn, extents.error());
    *blockList = vix::capi::make_block_list(*extents);
    if (*blockList == nullptr) return report(fn, fail(VIX_E_OUT_OF_MEMORY, "out of memory"));
    return VIX_OK;
  });
}

VixError VixDiskLib_FreeBlockList(VixDiskLibBlockList* blockList) {
  // Freed even after Exit (the memory is the caller's to give back), but the call still reports
  // the uninitialised library like every other call.
  free(blockList);
  if (Library::get() == nullptr) return not_initialized("VixDiskLib_FreeBlockList");
  return VIX_OK;
}

VixError VixDiskLib_ReadMetadata(VixDiskLibHandle diskHandle, const char* key, char* buf,
                                 size_t bufLen, size_t* requiredLen) {
  const char* fn = "VixDiskLib_ReadMetadata";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (key == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL key"));
    auto md = diskHandle->disk->metadata();
    if (!md.ok()) return report(fn, md.error());
    return report(fn, vix::capi::copy_metadata_value(*md, key, buf, bufLen, requiredLen));
  });
}

VixError VixDiskLib_WriteMetadata(VixDiskLibHandle diskHandle, const char* key, const char* val) {
  const char* fn = "VixDiskLib_WriteMetadata";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (key == nullptr || val == nullptr) {
      return report(fn, fail(VIX_E_INVALID_ARG, "NULL key or value"));
    }
    return report(fn, diskHandle->disk->write_metadata(key, val));
  });
}

VixError VixDiskLib_GetMetadataKeys(VixDiskLibHandle diskHandle, char* keys, size_t maxLen,
                                    size_t* requiredLen) {
  const char* fn = "VixDiskLib_GetMetadataKeys";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    auto md = diskHandle->disk->metadata();
    if (!md.ok()) return report(fn, md.error());
    return report(fn, vix::capi::copy_metadata_keys(*md, keys, maxLen, requiredLen));
  });
}

VixError VixDiskLib_Create(const VixDiskLibConnection connection, const char* path,
                           const VixDiskLibCreateParams* createParams,
                           VixDiskLibProgressFunc progressFunc, void* progressCallbackData) {
  const char* fn = "VixDiskLib_Create";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    if (path == nullptr || createParams == nullptr) {
      return report(fn, fail(VIX_E_INVALID_ARG, "NULL path or createParams"));
    }
    if (VixError e = report(fn, connection->conn->create(path, *createParams))) return e;
    return progress_done(progressFunc, progressCallbackData);
  });
}

VixError VixDiskLib_CreateChild(VixDiskLibHandle diskHandle, const char* childPath,
                                VixDiskLibDiskType diskType, VixDiskLibProgressFunc progressFunc,
                                void* progressCallbackData) {
  const char* fn = "VixDiskLib_CreateChild";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (childPath == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL childPath"));
    if (VixError e = report(fn, diskHandle->disk->create_child(childPath, diskType))) return e;
    return progress_done(progressFunc, progressCallbackData);
  });
}

VixError VixDiskLib_Unlink(VixDiskLibConnection connection, const char* path) {
  const char* fn = "VixDiskLib_Unlink";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    if (path == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL path"));
    if (!connection->conn->spec().is_local()) {
      return report(fn, fail(VIX_E_NOT_SUPPORTED, "Unlink works on local disks only"));
    }
    if (connection->conn->read_only()) {
      return report(
          fn, fail(VIX_E_FILE_READ_ONLY, std::string(path) + ": Unlink on a read-only connection"));
    }
    return report(fn, vix::capi::unlink_local_disk(path));
  });
}

VixError VixDiskLib_Grow(VixDiskLibConnection connection, const char* path,
                         VixDiskLibSectorType capacity, Bool updateGeometry,
                         VixDiskLibProgressFunc progressFunc, void* progressCallbackData) {
  const char* fn = "VixDiskLib_Grow";
  (void)path, (void)capacity, (void)updateGeometry, (void)progressFunc, (void)progressCallbackData;
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    return unsupported(fn);
  });
}

VixError VixDiskLib_Shrink(VixDiskLibHandle diskHandle, VixDiskLibProgressFunc progressFunc,
                           void* progressCallbackData) {
  const char* fn = "VixDiskLib_Shrink";
  (void)progressFunc, (void)progressCallbackData;
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    return unsupported(fn);
  });
}

VixError VixDiskLib_Defragment(VixDiskLibHandle diskHandle, VixDiskLibProgressFunc progressFunc,
                               void* progressCallbackData) {
  const char* fn = "VixDiskLib_Defragment";
  (void)progressFunc, (void)progressCallbackData;
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    return unsupported(fn);
  });
}

VixError VixDiskLib_Rename(const char* srcFileName, const char* dstFileName) {
  const char* fn = "VixDiskLib_Rename";
  return guarded(fn, [&]() -> VixError {
    if (Library::get() == nullptr) return not_initialized(fn);
    if (srcFileName == nullptr || dstFileName == nullptr) {
      return report(fn, fail(VIX_E_INVALID_ARG, "NULL file name"));
    }
    return unsupported(fn);
  });
}

VixError VixDiskLib_Clone(const VixDiskLibConnection dstConnection, const char* dstPath,
                          const VixDiskLibConnection srcConnection, const char* srcPath,
                          const VixDiskLibCreateParams* vixCreateParams,
                          VixDiskLibProgressFunc progressFunc, void* progressCallbackData,
                          Bool overWrite) {
  const char* fn = "VixDiskLib_Clone";
  (void)dstPath, (void)srcPath, (void)vixCreateParams, (void)progressFunc,
      (void)progressCallbackData, (void)overWrite;
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, dstConnection, "destination connection")) return e;
    if (VixError e = check_handle(fn, srcConnection, "source connection")) return e;
    return unsupported(fn);
  });
}

VixError VixDiskLib_IsAttachPossible(VixDiskLibHandle parent, VixDiskLibHandle child) {
  const char* fn = "VixDiskLib_IsAttachPossible";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, parent, "parent disk handle")) return e;
    if (VixError e = check_handle(fn, child, "child disk handle")) return e;
    return unsupported(fn);
  });
}

VixError VixDiskLib_Attach(VixDiskLibHandle parent, VixDiskLibHandle child) {
  const char* fn = "VixDiskLib_Attach";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, parent, "parent disk handle")) return e;
    if (VixError e = check_handle(fn, child, "child disk handle")) return e;
    return unsupported(fn);
  });
}

VixError VixDiskLib_SpaceNeededForClone(VixDiskLibHandle diskHandle,
                                        VixDiskLibDiskType cloneDiskType, uint64* spaceNeeded) {
  const char* fn = "VixDiskLib_SpaceNeededForClone";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, diskHandle, "disk handle")) return e;
    if (spaceNeeded == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL spaceNeeded"));
    auto bytes = vix::capi::space_needed_for_clone(diskHandle->disk->device(), cloneDiskType);
    if (!bytes.ok()) return report(fn, bytes.error());
    *spaceNeeded = *bytes;
    return VIX_OK;
  });
}

VixError VixDiskLib_CheckRepair(const VixDiskLibConnection connection, const char* filename,
                                Bool repair) {
  const char* fn = "VixDiskLib_CheckRepair";
  return guarded(fn, [&]() -> VixError {
    if (VixError e = check_handle(fn, connection, "connection")) return e;
    if (filename == nullptr) return report(fn, fail(VIX_E_INVALID_ARG, "NULL filename"));
    // The check is a full open (descriptor, extents, grain directories, parent CIDs), which
    // validates every structure the engine reads. Nothing is ever rewritten: a disk that fails
    // the check is reported, not repaired.
    auto disk = connection->conn->open(filename, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    if (!disk.ok()) {
      Error e = disk.error();
      if (repair) e.message += " (vixfs does not repair disks)";
      return report(fn, e);
    }
    return VIX_OK;
  });
}

}  // extern "C"
