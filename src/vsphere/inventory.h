// What the vSphere client reads from the inventory: plain values, no XML.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vix::vsphere {

struct MoRef {
  std::string type;
  std::string value;
  bool operator==(const MoRef&) const = default;
};

// One link of a disk's backing chain (the disk itself first, then parent, grandparent, ...).
struct DiskBacking {
  std::string file_name;  // datastore path, "[LocalDS_0] vm/disk1.vmdk"
  std::string datastore;  // Datastore moRef value ("" when absent)
  std::string disk_mode;  // persistent, independent_nonpersistent, ...
  std::string uuid;       // "" when absent
  std::string type;       // VirtualDiskFlatVer2BackingInfo, ... ("" for untyped parents)
  // VirtualDiskRawDiskMappingVer1BackingInfo (RDM) only: the LUN behind the mapping file.
  std::string lun_uuid;            // vSphere's ScsiLun uuid (hex, encodes the NAA identifier)
  std::string device_name;         // the ESXi host's device path, "/vmfs/devices/disks/naa.*"
  std::string compatibility_mode;  // physicalMode or virtualMode
};

struct VirtualDisk {
  int32_t key = 0;
  std::string label;
  int32_t controller_key = 0;
  std::string controller_kind;  // scsi, ide, sata, nvme, or "" when the controller is unknown
  int32_t bus = -1;
  int32_t unit = -1;
  uint64_t capacity_bytes = 0;     // capacityInBytes, else capacityInKB * 1024
  std::vector<DiskBacking> chain;  // chain[0] is the disk's own backing
  // Bytes the disk's files take on the datastore up to this point, from the VM's layoutEx: the
  // sizes of the files of every link of its chain (the live chain for a VM's disk, the chain as
  // the snapshot recorded it for a snapshot's). 0 when layoutEx does not say (or says 0).
  uint64_t stored_bytes = 0;
  // backing.changeId of the disk's own backing at this point ("" when CBT is off or the backing
  // has none): "<per-disk UUID>/<sequence>", what QueryChangedDiskAreas takes as a base later.
  std::string change_id;
  const std::string& file_name() const;
  // "scsi0-0" style name (kind + bus + "-" + unit); "disk<key>" when the controller is unknown.
  std::string slot_name() const;
};

struct Snapshot {
  std::string moref;
  std::string name;
  std::string description;
  std::string create_time;     // as the server wrote it (xsd:dateTime)
  int64_t create_time_ns = 0;  // parsed, UTC nanoseconds since the epoch
  bool quiesced = false;
  int64_t id = 0;
  std::vector<Snapshot> children;
  std::vector<VirtualDisk> disks;  // filled by Client::inventory()
};

struct VirtualMachine {
  std::string moref;
  std::string name;
  std::string uuid;                 // config.uuid (BIOS UUID)
  std::string host;                 // runtime.host moRef value
  std::string power_state;          // poweredOn, poweredOff, suspended
  std::string current_snapshot;     // "" when none
  bool cbt_enabled = false;         // config.changeTrackingEnabled (false when not reported)
  std::vector<Snapshot> snapshots;  // root snapshots
  std::vector<VirtualDisk> disks;   // the VM's current devices
};

struct Datastore {
  std::string moref;
  std::string name;
  std::string url;         // summary.url: ds:///vmfs/volumes/..., or a local folder on vcsim
  std::string datacenter;  // moRef of the datacenter that lists it ("" if none does)
};

struct Datacenter {
  std::string moref;
  std::string name;
  std::string path;  // inventory path below the root folder, the /folder dcPath ("F0/DC0")
  std::vector<std::string> datastores;  // Datastore moRefs
};

struct Host {
  std::string moref;
  std::string name;
  std::string ssl_thumbprint;  // summary.config.sslThumbprint (SHA-1), "" when not reported
};

struct Inventory {
  std::vector<VirtualMachine> vms;
  std::vector<Datacenter> datacenters;
  std::vector<Datastore> datastores;
  std::vector<Host> hosts;
  const VirtualMachine* find_vm(const std::string& moref) const;
  const Datastore* find_datastore_by_name(const std::string& name) const;
  const Datacenter* find_datacenter(const std::string& moref) const;
};

// Walks a snapshot tree depth-first (pre-order) and returns every node.
std::vector<const Snapshot*> flatten(const std::vector<Snapshot>& roots);
const Snapshot* find_snapshot(const std::vector<Snapshot>& roots, const std::string& moref);

// "[ds] dir/file.vmdk" -> {"ds", "dir/file.vmdk"}; nullopt when not in that form.
struct DatastorePath {
  std::string datastore;
  std::string path;
};
std::optional<DatastorePath> parse_datastore_path(const std::string& text);

// The datastore file URL of the https transport:
// <scheme>://<host:port>/folder/<path>?dcPath=&dsName= with path segments and query values
// percent-encoded. `endpoint` is the SOAP URL (…/sdk).
std::string datastore_file_url(const std::string& endpoint, const std::string& dc_path,
                               const std::string& ds_name, const std::string& path);

}  // namespace vix::vsphere
