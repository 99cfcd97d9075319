// Changed block tracking: VirtualMachine.QueryChangedDiskAreas looped over a whole disk.
//
// vSphere answers one window of the disk per call, DiskChangeInfo{startOffset, length,
// changedArea[]}, which may be a small part of it and may hold no area at all; the next call
// starts where the window ended (docs/reference/vsphere-backup.md §2). The loop runs from 0 to the
// capacity, never stops at an empty window, and refuses a reply that does not continue where it
// was asked (startOffset), does not advance (length 0), runs past the disk, or lists areas outside
// its window, unsorted or overlapping: a wrong area list would make a wrong incremental copy, so
// it is an error naming the field and quoting the reply, never a guess.
#pragma once

#include <pugixml.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "vsphere/client.h"

namespace vix::vsphere {

// A byte range of the disk that changed.
struct ChangedArea {
  uint64_t start = 0;
  uint64_t length = 0;
  bool operator==(const ChangedArea&) const = default;
};

// Bounds on what one query may take, so a hostile server cannot make the loop run forever or
// the list grow without end.
inline constexpr uint64_t kMaxChangeWindows = 1u << 20;
inline constexpr uint64_t kMaxChangedAreas = 1u << 24;

// One reply, checked against the request: the window [start_offset, start_offset + length).
struct ChangeWindow {
  uint64_t start_offset = 0;
  uint64_t length = 0;
  std::vector<ChangedArea> areas;
};
// `returnval` is the reply's DiskChangeInfo; `asked` the startOffset of the request. `what`
// names the query in errors ("QueryChangedDiskAreas vm-1 snapshot-2 disk 2000").
Result<ChangeWindow> parse_change_window(const pugi::xml_node& returnval, uint64_t asked,
                                         uint64_t capacity, const std::string& what);

// The areas of disk `device_key` changed since `change_id` ("*": every allocated area) up to
// `snapshot` (a VirtualMachineSnapshot moRef; "" for the VM's current state), over the whole
// disk of `capacity` bytes: sorted, adjacent areas merged. vSphere's own faults (FileFault when
// CBT is off or the changeId is from before a reset, NotFound for the key, ...) come back as
// errors carrying the server's words.
Result<std::vector<ChangedArea>> query_changed_areas(Client& client, const std::string& vm,
                                                     const std::string& snapshot,
                                                     int32_t device_key, uint64_t capacity,
                                                     const std::string& change_id);

}  // namespace vix::vsphere
