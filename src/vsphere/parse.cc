#include "vsphere/parse.h"

#include <map>
#include <set>

#include "vsphere/xml.h"

namespace vix::vsphere {

std::string controller_kind(const std::string& t) {
  if (t == "VirtualIDEController") return "ide";
  if (t == "VirtualAHCIController" || t == "VirtualSATAController") return "sata";
  if (t == "VirtualNVMEController") return "nvme";
  if (t == "ParaVirtualSCSIController" || t == "VirtualLsiLogicController" ||
      t == "VirtualLsiLogicSASController" || t == "VirtualBusLogicController" ||
      t == "VirtualSCSIController") {
    return "scsi";
  }
  return {};
}

namespace {

struct Walk {
  size_t count = 0;
};

Result<void> parse_snapshot_list(const pugi::xml_node& parent, std::string_view list_name,
                                 int depth, Walk& walk, std::vector<Snapshot>& out) {
  if (depth > kMaxSnapshotDepth) {
    return fail(VIX_E_INVALID_XML, "vSphere response: snapshot tree deeper than " +
                                       std::to_string(kMaxSnapshotDepth) + " levels");
  }
  for (pugi::xml_node n = parent.first_child(); n; n = n.next_sibling()) {
    if (n.type() != pugi::node_element || local_name(n) != list_name) continue;
    if (++walk.count > kMaxSnapshots) {
      return fail(VIX_E_INVALID_XML,
                  "vSphere response: more than " + std::to_string(kMaxSnapshots) + " snapshots");
    }
    Snapshot s;
    s.moref = child_text(n, "snapshot");
    if (s.moref.empty()) {
      return fail(VIX_E_INVALID_XML, "vSphere response: snapshot tree node without a moRef");
    }
    s.name = child_text(n, "name");
    s.description = child_text(n, "description");
    s.create_time = child_text(n, "createTime");
    if (!s.create_time.empty()) {
      VIX_ASSIGN_OR_RETURN(s.create_time_ns,
                           parse_datetime_ns(s.create_time, "snapshot " + s.moref + " createTime"));
    }
    if (pugi::xml_node q = child(n, "quiesced")) {
      VIX_ASSIGN_OR_RETURN(s.quiesced,
                           parse_bool(q.child_value(), "snapshot " + s.moref + " quiesced"));
    }
    if (pugi::xml_node id = child(n, "id")) {
      VIX_ASSIGN_OR_RETURN(s.id, parse_int(id.child_value(), "snapshot " + s.moref + " id"));
    }
    VIX_TRY(parse_snapshot_list(n, "childSnapshotList", depth + 1, walk, s.children));
    out.push_back(std::move(s));
  }
  return ok();
}

Result<int32_t> int32_field(const pugi::xml_node& n, std::string_view name,
                            const std::string& where) {
  VIX_ASSIGN_OR_RETURN(int64_t v, parse_int(n.child_value(), where + " " + std::string(name)));
  if (v < INT32_MIN || v > INT32_MAX) {
    return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " " + std::string(name) + " " +
                                       std::to_string(v) + " out of range");
  }
  return static_cast<int32_t>(v);
}

}  // namespace

Result<std::vector<Snapshot>> parse_snapshot_info(const pugi::xml_node& val,
                                                  std::string* current_snapshot) {
  std::vector<Snapshot> roots;
  Walk walk;
  if (current_snapshot) *current_snapshot = child_text(val, "currentSnapshot");
  VIX_TRY(parse_snapshot_list(val, "rootSnapshotList", 0, walk, roots));
  return roots;
}

Result<std::vector<VirtualDisk>> parse_disks(const pugi::xml_node& val) {
  struct Ctrl {
    std::string kind;
    int32_t bus = -1;
  };
  std::map<int32_t, Ctrl> controllers;
  std::vector<VirtualDisk> disks;
  for (pugi::xml_node d = val.first_child(); d; d = d.next_sibling()) {
    if (d.type() != pugi::node_element) continue;
    std::string type = xsi_type(d);
    std::string kind = controller_kind(type);
    if (!kind.empty()) {
      std::string where = type;
      VIX_ASSIGN_OR_RETURN(int32_t key, int32_field(child(d, "key"), "key", where));
      Ctrl c{kind, -1};
      VIX_ASSIGN_OR_RETURN(c.bus, int32_field(child(d, "busNumber"), "busNumber",
                                              where + " " + std::to_string(key)));
      controllers[key] = c;
      continue;
    }
    if (type != "VirtualDisk") continue;
    VirtualDisk disk;
    VIX_ASSIGN_OR_RETURN(disk.key, int32_field(child(d, "key"), "key", "VirtualDisk"));
    std::string where = "VirtualDisk " + std::to_string(disk.key);
    disk.label = child_text(child(d, "deviceInfo"), "label");
    if (pugi::xml_node ck = child(d, "controllerKey")) {
      VIX_ASSIGN_OR_RETURN(disk.controller_key, int32_field(ck, "controllerKey", where));
    }
    if (pugi::xml_node un = child(d, "unitNumber")) {
      VIX_ASSIGN_OR_RETURN(disk.unit, int32_field(un, "unitNumber", where));
    }
    if (pugi::xml_node b = child(d, "capacityInBytes")) {
      VIX_ASSIGN_OR_RETURN(int64_t v, parse_int(b.child_value(), where + " capacityInBytes"));
      if (v < 0)
        return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " capacityInBytes < 0");
      disk.capacity_bytes = static_cast<uint64_t>(v);
    }
    if (pugi::xml_node kb = child(d, "capacityInKB"); kb && disk.capacity_bytes == 0) {
      VIX_ASSIGN_OR_RETURN(int64_t v, parse_int(kb.child_value(), where + " capacityInKB"));
      if (v < 0 || v > (INT64_MAX >> 10)) {
        return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " capacityInKB out of range");
      }
      disk.capacity_bytes = static_cast<uint64_t>(v) << 10;
    }
    pugi::xml_node b = child(d, "backing");
    for (int depth = 0; b; ++depth, b = child(b, "parent")) {
      if (depth >= kMaxBackingChain) {
        return fail(VIX_E_INVALID_XML, "vSphere response: " + where +
                                           " backing chain longer than " +
                                           std::to_string(kMaxBackingChain));
      }
      DiskBacking link;
      link.file_name = child_text(b, "fileName");
      link.datastore = child_text(b, "datastore");
      link.disk_mode = child_text(b, "diskMode");
      link.uuid = child_text(b, "uuid");
      link.type = xsi_type(b);
      link.lun_uuid = child_text(b, "lunUuid");
      link.device_name = child_text(b, "deviceName");
      link.compatibility_mode = child_text(b, "compatibilityMode");
      if (depth == 0) disk.change_id = child_text(b, "changeId");
      disk.chain.push_back(std::move(link));
    }
    disks.push_back(std::move(disk));
  }
  for (VirtualDisk& disk : disks) {
    auto it = controllers.find(disk.controller_key);
    if (it != controllers.end()) {
      disk.controller_kind = it->second.kind;
      disk.bus = it->second.bus;
    }
  }
  return disks;
}

}  // namespace vix::vsphere

namespace vix::vsphere {
namespace {

// <disk><key/><chain><fileKey/>...</chain>...</disk> elements under `parent`, into `out`.
Result<void> parse_disk_layouts(const pugi::xml_node& parent, const std::string& where,
                                size_t* count, std::map<int32_t, std::vector<int32_t>>* out) {
  for (pugi::xml_node d = parent.first_child(); d; d = d.next_sibling()) {
    if (d.type() != pugi::node_element || local_name(d) != "disk") continue;
    VIX_ASSIGN_OR_RETURN(int32_t key, int32_field(child(d, "key"), "key", where + " disk"));
    std::vector<int32_t>& keys = (*out)[key];
    for (pugi::xml_node c = d.first_child(); c; c = c.next_sibling()) {
      if (c.type() != pugi::node_element || local_name(c) != "chain") continue;
      for (pugi::xml_node f = c.first_child(); f; f = f.next_sibling()) {
        if (f.type() != pugi::node_element || local_name(f) != "fileKey") continue;
        if (++*count > kMaxLayoutEntries) {
          return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " has more than " +
                                             std::to_string(kMaxLayoutEntries) + " entries");
        }
        VIX_ASSIGN_OR_RETURN(int32_t fk,
                             int32_field(f, "fileKey", where + " disk " + std::to_string(key)));
        keys.push_back(fk);
      }
    }
  }
  return ok();
}

uint64_t stored_bytes(const FileLayout& layout, const std::vector<int32_t>& keys) {
  std::set<int32_t> seen;
  uint64_t sum = 0;
  for (int32_t k : keys) {
    if (!seen.insert(k).second) continue;
    auto it = layout.file_size.find(k);
    if (it == layout.file_size.end()) continue;
    sum = it->second > UINT64_MAX - sum ? UINT64_MAX : sum + it->second;
  }
  return sum;
}

void apply_disks(const FileLayout& layout, const std::map<int32_t, std::vector<int32_t>>& disks,
                 std::vector<VirtualDisk>* out) {
  for (VirtualDisk& d : *out) {
    auto it = disks.find(d.key);
    d.stored_bytes = it == disks.end() ? 0 : stored_bytes(layout, it->second);
  }
}

}  // namespace

Result<FileLayout> parse_layout_ex(const pugi::xml_node& val) {
  const std::string where = "layoutEx";
  FileLayout layout;
  size_t count = 0;
  for (pugi::xml_node n = val.first_child(); n; n = n.next_sibling()) {
    if (n.type() != pugi::node_element) continue;
    const std::string_view name = local_name(n);
    if (name != "file" && name != "snapshot") continue;
    if (++count > kMaxLayoutEntries) {
      return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " has more than " +
                                         std::to_string(kMaxLayoutEntries) + " entries");
    }
    if (name == "file") {
      VIX_ASSIGN_OR_RETURN(int32_t key, int32_field(child(n, "key"), "key", where + " file"));
      uint64_t size = 0;
      if (pugi::xml_node s = child(n, "size")) {
        VIX_ASSIGN_OR_RETURN(
            int64_t v,
            parse_int(s.child_value(), where + " file " + std::to_string(key) + " size"));
        if (v < 0) {
          return fail(VIX_E_INVALID_XML,
                      "vSphere response: " + where + " file " + std::to_string(key) + " size < 0");
        }
        size = static_cast<uint64_t>(v);
      }
      layout.file_size[key] = size;
    } else {
      const std::string snap = child_text(n, "key");
      if (snap.empty()) {
        return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " snapshot without a key");
      }
      VIX_TRY(parse_disk_layouts(n, where + " snapshot " + snap, &count, &layout.snapshots[snap]));
    }
  }
  VIX_TRY(parse_disk_layouts(val, where, &count, &layout.disks));
  return layout;
}

void apply_file_layout(const FileLayout& layout, VirtualMachine* vm) {
  apply_disks(layout, layout.disks, &vm->disks);
  std::vector<Snapshot*> stack;
  for (Snapshot& s : vm->snapshots) stack.push_back(&s);
  static const std::map<int32_t, std::vector<int32_t>> kNone;
  while (!stack.empty()) {
    Snapshot* s = stack.back();
    stack.pop_back();
    auto it = layout.snapshots.find(s->moref);
    apply_disks(layout, it == layout.snapshots.end() ? kNone : it->second, &s->disks);
    for (Snapshot& c : s->children) stack.push_back(&c);
  }
}

}  // namespace vix::vsphere
