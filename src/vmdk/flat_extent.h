// Flat extents (FLAT / VMFS, with a start offset) and ZERO extents
// (docs/reference/vmdk-format.md §11).
#pragma once

#include <memory>

#include "vmdk/extent.h"

namespace vix::vmdk {

// A raw file region: extent sector s lives at byte (offset_sectors + s) * 512 of src. Bytes past
// the end of the file read as zeros. src null means a ZERO extent (reads zeros, refuses writes).
std::unique_ptr<Extent> make_flat_extent(std::unique_ptr<ByteSource> src, uint64_t sectors,
                                         uint64_t offset_sectors);

}  // namespace vix::vmdk
