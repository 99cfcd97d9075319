// Client::inventory(): a fixed number of round trips whatever the inventory's size — one
// ContainerView over everything under the root folder, one RetrievePropertiesEx for all VMs,
// folders, datacenters, datastores and hosts (with each VM's layoutEx: the sizes of its disks'
// files), one for the devices of every snapshot (each paged).
#include <map>

#include "vsphere/client.h"
#include "vsphere/client_internal.h"
#include "vsphere/parse.h"

namespace vix::vsphere {

using detail::moref_list;
using detail::prop_set;
using detail::view_object_set;

namespace {

struct Folder {
  std::string name;
  std::string parent;
};

struct RawInventory {
  Inventory inv;
  std::map<std::string, Folder> folders;
  std::map<std::string, std::string> dc_parent;
  std::map<std::string, FileLayout> layouts;  // VM moRef -> its layoutEx
  // Disks of the VMs and of their snapshots learn their stored bytes from the layouts.
  Inventory take() {
    for (VirtualMachine& vm : inv.vms) {
      if (auto it = layouts.find(vm.moref); it != layouts.end()) apply_file_layout(it->second, &vm);
    }
    return std::move(inv);
  }
};

Result<void> take_object(const ObjectContent& oc, RawInventory& raw) {
  const std::string& type = oc.obj.type;
  if (type == "VirtualMachine") {
    VirtualMachine vm;
    vm.moref = oc.obj.value;
    vm.name = oc.find("name").child_value();
    vm.uuid = oc.find("config.uuid").child_value();
    vm.host = oc.find("runtime.host").child_value();
    vm.power_state = oc.find("runtime.powerState").child_value();
    if (pugi::xml_node c = oc.find("config.changeTrackingEnabled")) {
      VIX_ASSIGN_OR_RETURN(vm.cbt_enabled,
                           parse_bool(c.child_value(), vm.moref + " config.changeTrackingEnabled"));
    }
    if (pugi::xml_node s = oc.find("snapshot")) {
      VIX_ASSIGN_OR_RETURN(vm.snapshots, parse_snapshot_info(s, &vm.current_snapshot));
    }
    if (pugi::xml_node d = oc.find("config.hardware.device")) {
      VIX_ASSIGN_OR_RETURN(vm.disks, parse_disks(d));
    }
    if (pugi::xml_node l = oc.find("layoutEx")) {
      VIX_ASSIGN_OR_RETURN(raw.layouts[vm.moref], parse_layout_ex(l));
    }
    raw.inv.vms.push_back(std::move(vm));
  } else if (type == "Datacenter") {
    Datacenter dc;
    dc.moref = oc.obj.value;
    dc.name = oc.find("name").child_value();
    dc.datastores = moref_list(oc.find("datastore"));
    raw.dc_parent[dc.moref] = oc.find("parent").child_value();
    raw.inv.datacenters.push_back(std::move(dc));
  } else if (type == "Folder") {
    raw.folders[oc.obj.value] = {oc.find("name").child_value(), oc.find("parent").child_value()};
  } else if (type == "Datastore") {
    Datastore ds;
    ds.moref = oc.obj.value;
    ds.name = oc.find("name").child_value();
    ds.url = child_text(oc.find("summary"), "url");
    raw.inv.datastores.push_back(std::move(ds));
  } else if (type == "HostSystem") {
    raw.inv.hosts.push_back({oc.obj.value, oc.find("name").child_value(),
                             oc.find("summary.config.sslThumbprint").child_value()});
  }
  return ok();
}

void resolve_paths(RawInventory& raw, const std::string& root_folder) {
  for (Datacenter& dc : raw.inv.datacenters) {
    std::string path = dc.name;
    std::string parent = raw.dc_parent[dc.moref];
    // Bounded: a cycle in hostile data must not loop forever.
    for (int i = 0; i < 64 && !parent.empty() && parent != root_folder; ++i) {
      auto it = raw.folders.find(parent);
      if (it == raw.folders.end()) break;
      path = it->second.name + "/" + path;
      parent = it->second.parent;
    }
    dc.path = path;
    for (const std::string& ds : dc.datastores) {
      for (Datastore& d : raw.inv.datastores) {
        if (d.moref == ds && d.datacenter.empty()) d.datacenter = dc.moref;
      }
    }
  }
}

}  // namespace

Result<Inventory> Client::inventory() {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, service_content());
  // A snapshot deleted between the two calls faults the second one: read everything again once.
  for (int attempt = 0;; ++attempt) {
    VIX_ASSIGN_OR_RETURN(
        SoapResponse cv,
        call("CreateContainerView", {"ViewManager", sc.view_manager},
             moref_xml("container", "Folder", sc.root_folder) +
                 "<type>Folder</type><type>Datacenter</type><type>Datastore</type>"
                 "<type>HostSystem</type><type>VirtualMachine</type><recursive>true</recursive>"));
    std::string view = child_text(cv.body, "returnval");
    if (view.empty()) {
      return fail(VIX_E_INVALID_XML, "vSphere CreateContainerView: no view in the response");
    }
    RawInventory raw;
    auto got = retrieve(
        "<specSet>" +
            prop_set("VirtualMachine",
                     {"name", "config.uuid", "runtime.host", "runtime.powerState", "snapshot",
                      "config.hardware.device", "layoutEx", "config.changeTrackingEnabled"}) +
            prop_set("Datacenter", {"name", "parent", "datastore"}) +
            prop_set("Folder", {"name", "parent"}) + prop_set("Datastore", {"name", "summary"}) +
            prop_set("HostSystem", {"name", "summary.config.sslThumbprint"}) +
            view_object_set(view) + "</specSet>",
        [&](const ObjectContent& oc) { return take_object(oc, raw); });
    // The view is per session; destroy it whatever happened so it does not pile up.
    (void)call_once("DestroyView", {"ContainerView", view}, "", nullptr);
    VIX_TRY(got);
    resolve_paths(raw, sc.root_folder);

    std::map<std::string, Snapshot*> by_moref;
    std::string object_sets;
    for (VirtualMachine& vm : raw.inv.vms) {
      std::vector<Snapshot*> stack;
      for (Snapshot& s : vm.snapshots) stack.push_back(&s);
      while (!stack.empty()) {
        Snapshot* s = stack.back();
        stack.pop_back();
        by_moref[s->moref] = s;
        object_sets +=
            "<objectSet>" + moref_xml("obj", "VirtualMachineSnapshot", s->moref) + "</objectSet>";
        for (Snapshot& c : s->children) stack.push_back(&c);
      }
    }
    if (by_moref.empty()) return raw.take();
    auto devs =
        retrieve("<specSet>" + prop_set("VirtualMachineSnapshot", {"config.hardware.device"}) +
                     object_sets + "</specSet>",
                 [&](const ObjectContent& oc) -> Result<void> {
                   auto it = by_moref.find(oc.obj.value);
                   pugi::xml_node val = oc.find("config.hardware.device");
                   if (it == by_moref.end() || !val) return ok();
                   VIX_ASSIGN_OR_RETURN(it->second->disks, parse_disks(val));
                   return ok();
                 });
    if (devs.ok()) return raw.take();
    if (devs.error().code != VIX_E_OBJECT_NOT_FOUND || attempt > 0) return std::move(devs).error();
  }
}

}  // namespace vix::vsphere
