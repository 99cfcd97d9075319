// The hotadd transport: the disk (a snapshot's, or the live one) is attached to the proxy VM this
// process runs in with ReconfigVM_Task, found as the block device Linux names after the disk's
// uuid (`scsi-3<uuid hex>` under /dev/disk/by-id), read there, and detached on close. Every attach
// is journalled (hotadd_journal.h) so that Cleanup detaches what a killed process left behind.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/block_device.h"
#include "common/config.h"
#include "common/result.h"
#include "transports/transport.h"

namespace vix::hotadd {

// The by-id link name of a VMware disk: "scsi-3" + the uuid in lower-case hex without dashes or
// spaces ("6000C29a-0000-...-0001" -> "scsi-36000c29a...0001"); "" when `uuid` is not 32 hex
// digits.
std::string scsi_link_name(std::string_view uuid);

// /sys/class/dmi/id/product_uuid against a VM's config.uuid: equal ignoring case and dashes, or
// equal once the first three fields are byte-swapped (SMBIOS stores them little-endian, and some
// kernels and firmware report them that way).
bool bios_uuid_matches(std::string_view product_uuid, std::string_view vm_uuid);

// The device a hot-add open hands back: `node` (the attached disk's device node), whose methods
// it passes through untouched, and on close `detach`, run once the node is closed (the disk must
// not leave the proxy VM while a descriptor of it is open). Public so that a test can wrap a
// device of its own and observe the detach.
std::unique_ptr<BlockDevice> attached_device(std::unique_ptr<BlockDevice> node,
                                             std::function<void()> detach);

// VixDiskLib_Cleanup for hot-add: detaches the disks the journal lists for the server of `spec`
// whose owner process is gone, and drops their entries. Connects to the server only when there is
// such an entry. `remaining` counts the server's entries left afterwards (live owners' and failed
// detaches).
Result<CleanupResult> cleanup(const ConnectSpec& spec, const Config& config);

}  // namespace vix::hotadd
