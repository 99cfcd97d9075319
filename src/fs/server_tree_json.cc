// snapshot.json: what a snapshot folder holds, for people and scripts.
#include "fs/server_tree.h"

namespace vixfs {

namespace vs = vix::vsphere;

namespace {

// What was learned of the VM as true or false; null when nothing was.
std::string learned(const std::map<std::string, bool>& facts, const std::string& vm) {
  const auto it = facts.find(vm);
  return it == facts.end() ? "null" : it->second ? "true" : "false";
}

}  // namespace

std::string ServerTree::render_json(const SnapshotEntry& e) const {
  const vs::Snapshot* s = e.current ? nullptr : &e.snapshot;
  std::string j = "{\n";
  j += "  \"moref\": " + (s ? json_string(s->moref) : "null") + ",\n";
  j += "  \"name\": " + (s ? json_string(s->name) : "null") + ",\n";
  j += "  \"description\": " + (s ? json_string(s->description) : "null") + ",\n";
  j += "  \"createTime\": " + (s ? json_string(s->create_time) : "null") + ",\n";
  j += std::string("  \"quiesced\": ") + (s ? (s->quiesced ? "true" : "false") : "null") + ",\n";
  // consolidationNeeded: known once a snapshot removal from this mount read it, null before;
  // changeTracking: CBT on for the VM as the inventory last said (the disks' changeId is null
  // where it was off); privileges: what the session lacks for the VM (checked at mount and each
  // refresh).
  j += "  \"vm\": {\"moref\": " + json_string(e.vm_moref) +
       ", \"name\": " + json_string(e.vm_name) +
       ", \"consolidationNeeded\": " + learned(consolidation_needed_, e.vm_moref) +
       ", \"changeTracking\": " + learned(change_tracking_, e.vm_moref) +
       ", \"privileges\": " + privileges_.json(e.vm_moref) + "},\n";
  j += "  \"disks\": [";
  for (size_t i = 0; i < e.disks.size(); ++i) {
    const DiskEntry& d = e.disks[i];
    j += i ? ",\n" : "\n";
    j += "    {\"file\": " + json_string(d.file) + ", \"label\": " + json_string(d.label) +
         ", \"datastorePath\": " + json_string(d.datastore_path) +
         ", \"capacityBytes\": " + std::to_string(d.capacity) +
         ", \"changeId\": " + (d.change_id.empty() ? "null" : json_string(d.change_id)) +
         ", \"transport\": " + (d.transport.empty() ? "null" : json_string(d.transport)) + "}";
  }
  j += e.disks.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return j;
}

}  // namespace vixfs
