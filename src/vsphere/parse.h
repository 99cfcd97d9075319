// Parsing of vSphere property values (pugixml nodes) into inventory values. Separate from the
// client so the unit tests can feed hostile documents straight in.
#pragma once

#include <pugixml.hpp>

#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "vsphere/inventory.h"

namespace vix::vsphere {

// Bounds on recursive structures from the server, so a hostile document cannot exhaust the stack.
inline constexpr int kMaxSnapshotDepth = 256;
inline constexpr size_t kMaxSnapshots = 100000;
inline constexpr int kMaxBackingChain = 256;
inline constexpr size_t kMaxLayoutEntries = 1000000;  // files, disks, links and keys in a layoutEx

// <val type=VirtualMachineSnapshotInfo>: the snapshot tree and the current snapshot's moRef.
Result<std::vector<Snapshot>> parse_snapshot_info(const pugi::xml_node& val,
                                                  std::string* current_snapshot);
// <val type=ArrayOfVirtualDevice>: the VirtualDisks, with controller kind and bus resolved.
Result<std::vector<VirtualDisk>> parse_disks(const pugi::xml_node& val);

// <val type=VirtualMachineFileLayoutEx>, reduced to what st_blocks needs: each file's size, and
// the file keys of each disk's chain, for the VM now and for each snapshot.
struct FileLayout {
  std::map<int32_t, uint64_t> file_size;          // file key -> size
  std::map<int32_t, std::vector<int32_t>> disks;  // disk key -> file keys
  std::map<std::string, std::map<int32_t, std::vector<int32_t>>> snapshots;  // moRef -> disks
};
Result<FileLayout> parse_layout_ex(const pugi::xml_node& val);
// Sets stored_bytes of the VM's disks and of its snapshots' disks (those already parsed) from the
// layout: the sum of the distinct files of the disk's chain (saturating), 0 when unknown.
void apply_file_layout(const FileLayout& layout, VirtualMachine* vm);

// The controller kind ("scsi", "ide", "sata", "nvme") for a VirtualDevice type name, "" if the type
// is not a disk controller.
std::string controller_kind(const std::string& device_type);

}  // namespace vix::vsphere
