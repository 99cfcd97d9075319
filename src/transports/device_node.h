// A block device node (a LUN seen by this host, or a disk hot-added to it) read as a disk: the
// common end of the san and hotadd transports.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/block_device.h"
#include "common/result.h"

namespace vix {

struct DeviceNodeOptions {
  bool read_only = true;
  bool unbuffered = false;  // VIXDISKLIB_FLAG_OPEN_UNBUFFERED: O_DIRECT with aligned bounce buffers
  // The capacity the inventory gives the disk; a device smaller than it is refused (a wrong LUN or
  // a half-attached disk must not read as a short disk). 0: take the device's own size.
  uint64_t expected_capacity_bytes = 0;
  std::string_view transport_name;  // "san" or "hotadd", reported by transport_name()
};

// Opens `device_path` (a node, or a link to one). The device's size comes from BLKGETSIZE64
// (or st_size for a regular file, which tests may use). Errors name the path and the cause.
Result<std::unique_ptr<BlockDevice>> open_device_node(const std::string& device_path,
                                                      const DeviceNodeOptions& options);

}  // namespace vix
