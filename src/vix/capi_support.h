// The C ABI's data plumbing, kept in vixcore so unit tests reach it without dlopen: conversions
// between VDDK structs and the C++ core, the malloc'ed result objects (Info, BlockList,
// ConnectParams) and the buffer protocols of the metadata calls.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "common/block_device.h"
#include "common/result.h"
#include "vix/connection.h"

namespace vix::capi {

// Reads only the fields up to nfcHostPort, which never moved: callers built against VDDK <= 6.5
// headers pass a shorter struct. NULL params is a local connection.
ConnectSpec spec_from_params(const VixDiskLibConnectParams* params);

// A malloc'ed params struct with strdup'ed strings, marked (state) as owning them, so
// free_connect_params frees them; NULL on allocation failure.
VixDiskLibConnectParams* params_from_spec(const ConnectSpec& spec);
// Frees the struct; frees member strings only if params_from_spec made it.
void free_connect_params(VixDiskLibConnectParams* params);
bool owns_strings(const VixDiskLibConnectParams* params);

// malloc'ed VixDiskLibInfo (strings malloc'ed too); NULL on allocation failure.
VixDiskLibInfo* make_info(const DiskInfo& info);
void free_info(VixDiskLibInfo* info);

// malloc'ed list of 8 + 16*max(n,1) bytes; NULL on allocation failure.
VixDiskLibBlockList* make_block_list(const std::vector<SectorExtent>& extents);

// GetMetadataKeys: keys NUL-separated plus a final NUL. buf NULL or too small:
// VIX_E_BUFFER_TOOSMALL (*required set either way, when non-NULL).
Result<void> copy_metadata_keys(const std::map<std::string, std::string>& md, char* buf, size_t len,
                                size_t* required);
// ReadMetadata: the value and its NUL; unknown key: VIX_E_DISK_KEY_NOTFOUND.
Result<void> copy_metadata_value(const std::map<std::string, std::string>& md,
                                 const std::string& key, char* buf, size_t len, size_t* required);

// Unlink: removes the extent files, then the descriptor (vmdk::disk_files says which they are).
// A file that is not a VMDK is VIX_E_DISK_INVALIDDISK.
Result<void> unlink_local_disk(const std::string& path);

// SpaceNeededForClone: bytes a clone of the disk of `dev` as `type` takes, estimated from the
// allocated ranges (sparse types) or the capacity (flat types).
Result<uint64_t> space_needed_for_clone(BlockDevice& dev, VixDiskLibDiskType type);

}  // namespace vix::capi
