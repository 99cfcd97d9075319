// The VMDK engine's public face: open a disk (descriptor + extents + parent chain) as a
// BlockDevice, create disks, create redo-log children. Reads and writes go through ByteSources
// obtained from a SourceOpener, so the same engine serves local files and HTTP ranges.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/block_device.h"
#include "common/byte_source.h"

namespace vix::vmdk {

struct OpenOptions {
  bool read_only = true;
  bool single_link = false;             // open the leaf only; unallocated grains read as zeros
  bool direct = false;                  // O_DIRECT for extents where the source supports it
  std::string_view transport = "file";  // what BlockDevice::transport_name() reports
};

// Opens path (a text descriptor, a monolithicSparse/streamOptimized file) and, unless
// single_link, its parents through parentFileNameHint with CID checks. The opener is used only
// during the call. Errors name the file and the field that is wrong.
Result<std::unique_ptr<BlockDevice>> open(SourceOpener& opener, const std::string& path,
                                          const OpenOptions& options);

// Opens the sparse redo log at path read-write over `below`, a disk opened elsewhere (a remote
// disk read over nbd or https): grains the log holds are read from it, the rest from below,
// and writes fill a new grain's untouched sectors from below. below is never written. The log's
// capacity must equal below's.
Result<std::unique_ptr<BlockDevice>> open_redo_log(SourceOpener& opener, const std::string& path,
                                                   std::unique_ptr<BlockDevice> below);

struct CreateOptions {
  VixDiskLibDiskType type = VIXDISKLIB_DISK_MONOLITHIC_SPARSE;
  VixDiskLibAdapterType adapter = VIXDISKLIB_ADAPTER_IDE;
  uint16_t hw_version = 4;  // ddb.virtualHWVersion
  uint64_t capacity_sectors = 0;
};

// Creates a new, empty disk. Fails with VIX_E_FILE_ALREADY_EXISTS if path exists.
Result<void> create(SourceOpener& opener, const std::string& path, const CreateOptions& options);

// Creates a sparse redo log (child) of the disk at parent_path: parentCID = the parent's CID,
// parentFileNameHint relative to the child's directory. type is MONOLITHIC_SPARSE or SPLIT_SPARSE.
Result<void> create_child(SourceOpener& opener, const std::string& parent_path,
                          const std::string& child_path, VixDiskLibDiskType type);

// Creates an empty monolithicSparse redo log for a disk this engine cannot open as a file: its
// parentFileNameHint is parent_hint as the server names the disk ("[datastore1] vm/vm.vmdk")
// and its parentCID ffffffff, VMware's "not checked". open_redo_log reads it over that disk.
Result<void> create_redo_log(SourceOpener& opener, const std::string& path,
                             uint64_t capacity_sectors, const std::string& parent_hint);

}  // namespace vix::vmdk
