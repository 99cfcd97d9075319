// What a process of this library leaves on a server when it dies half-way (a snapshot it made,
// RelocateVM_Task disabled for it), how it marks those so that they can be told from everyone
// else's, and their removal once the process that made them is gone.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "vsphere/client.h"

namespace vix {

// Who made a snapshot or disabled a method: a tool of this library on a host, as a process.
struct Maker {
  std::string tool;  // "vixdisk backup", "vixfs"
  std::string host;
  long pid = 0;
};

// This process, as `tool`.
Maker this_process(const std::string& tool);

// Now as UTC in ISO 8601 ("2026-12-07T22:43:00Z"), as the descriptions and backup.json say it.
std::string utc_now();

// "Made by vixdisk backup on HOST, pid N, at WHEN; ...": the description of every snapshot the
// tools create, readable in the vSphere client; parse_snapshot_description reads it back.
std::string snapshot_description(const Maker& maker, const std::string& when);
std::optional<Maker> parse_snapshot_description(std::string_view description);
// The sourceId of PrepareForAccess / EndAccess for the maker ("vixdisk backup/HOST/N").
std::string access_identity(const Maker& maker);

struct Leftover {
  std::string vm, vm_name, snapshot, snapshot_name;
  Maker maker;
  bool removed = false;
  std::string error;  // why removing it failed
  // On a vCenter, RelocateVM_Task is enabled again for the maker (PrepareForAccess's sourceId),
  // whether or not the removal worked: the snapshot is how a disabled method is found at all.
  bool vcenter = false;
  bool enabled = false;      // EnableMethods for the maker succeeded
  std::string enable_error;  // why it failed
};

// Snapshots made by processes of this host that no longer run, found by their description in
// `inventory`; unless dry_run, each is removed (consolidating) and RelocateVM_Task is enabled
// again for its maker on a vCenter, also when the removal fails. A dry run changes nothing and
// only lists them. Snapshots of other hosts, of running processes or made by anyone else are
// never touched.
std::vector<Leftover> remove_dead_snapshots(vsphere::Client& client,
                                            const vsphere::Inventory& inventory, bool dry_run);

}  // namespace vix
