// Parsing of vSphere property values (pugixml nodes) into inventory values. Separate from the
// client so the unit tests can feed hostile documents straight in.
#pragma once

#include <pugixml.hpp>

#include <string>
#include <vector>

#include "common/result.h"
#include "vsphere/inventory.h"

namespace vix::vsphere {

// Bounds on recursive structures from the server, so a hostile document cannot exhaust the stack.
inline constexpr int kMaxSnapshotDepth = 256;
inline constexpr size_t kMaxSnapshots = 100000;
inline constexpr int kMaxBackingChain = 256;

// <val type=VirtualMachineSnapshotInfo>: the snapshot tree and the current snapshot's moRef.
Result<std::vector<Snapshot>> parse_snapshot_info(const pugi::xml_node& val,
                                                  std::string* current_snapshot);
// <val type=ArrayOfVirtualDevice>: the VirtualDisks, with controller kind and bus resolved.
Result<std::vector<VirtualDisk>> parse_disks(const pugi::xml_node& val);

// The controller kind ("scsi", "ide", "sata", "nvme") for a VirtualDevice type name, "" if the type
// is not a disk controller.
std::string controller_kind(const std::string& device_type);

}  // namespace vix::vsphere
