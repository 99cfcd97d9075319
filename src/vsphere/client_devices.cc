// Hot-add support: a VM's device list (disks, controllers and the units every device occupies),
// and ReconfigVM_Task add / remove of an existing disk file (never a fileOperation, so the file is
// neither created nor deleted).
#include <climits>

#include "vsphere/client.h"
#include "vsphere/client_internal.h"
#include "vsphere/parse.h"

namespace vix::vsphere {

using detail::prop_set;

bool VmDevice::is_scsi_controller() const {
  return controller_kind(type) == "scsi";
}

namespace {

Result<int32_t> int32_of(const pugi::xml_node& n, const std::string& where) {
  VIX_ASSIGN_OR_RETURN(int64_t v, parse_int(n.child_value(), where));
  if (v < INT32_MIN || v > INT32_MAX) {
    return fail(VIX_E_INVALID_XML,
                "vSphere response: " + where + " " + std::to_string(v) + " out of range");
  }
  return static_cast<int32_t>(v);
}

Result<void> optional_int32(const pugi::xml_node& parent, std::string_view name,
                            const std::string& where, int32_t* out) {
  if (pugi::xml_node n = child(parent, name)) {
    VIX_ASSIGN_OR_RETURN(*out, int32_of(n, where + " " + std::string(name)));
  }
  return ok();
}

Result<VmDevice> parse_device(const pugi::xml_node& d, const std::string& vm) {
  VmDevice dev;
  dev.type = xsi_type(d);
  const std::string where = vm + " device " + dev.type;
  pugi::xml_node key = child(d, "key");
  if (!key) return fail(VIX_E_INVALID_XML, "vSphere response: " + where + " without a key");
  VIX_ASSIGN_OR_RETURN(dev.key, int32_of(key, where + " key"));
  VIX_TRY(optional_int32(d, "controllerKey", where, &dev.controller_key));
  VIX_TRY(optional_int32(d, "unitNumber", where, &dev.unit));
  VIX_TRY(optional_int32(d, "busNumber", where, &dev.bus));
  VIX_TRY(optional_int32(d, "scsiCtlrUnitNumber", where, &dev.scsi_ctlr_unit));
  if (dev.is_disk()) {
    pugi::xml_node b = child(d, "backing");
    dev.backing_type = xsi_type(b);
    dev.file_name = child_text(b, "fileName");
    dev.disk_mode = child_text(b, "diskMode");
    dev.uuid = child_text(b, "uuid");
  }
  return dev;
}

}  // namespace

Result<std::vector<VmDevice>> Client::devices_of(const std::string& vm) {
  std::vector<VmDevice> out;
  bool seen = false;
  VIX_TRY(retrieve(
      "<specSet>" + prop_set("VirtualMachine", {"config.hardware.device"}) + "<objectSet>" +
          moref_xml("obj", "VirtualMachine", vm) + "</objectSet></specSet>",
      [&](const ObjectContent& oc) -> Result<void> {
        if (oc.obj.value != vm) return ok();
        if (!oc.missing.empty()) {
          const auto& [path, fault] = oc.missing.front();
          return fail(fault_code(fault), "vSphere: " + vm + " " + path + ": " + fault);
        }
        seen = true;
        pugi::xml_node val = oc.find("config.hardware.device");
        for (pugi::xml_node d = val.first_child(); d; d = d.next_sibling()) {
          if (d.type() != pugi::node_element) continue;
          if (out.size() >= kMaxDevices) {
            return fail(VIX_E_INVALID_XML, "vSphere response: " + vm + " has more than " +
                                               std::to_string(kMaxDevices) + " devices");
          }
          VIX_ASSIGN_OR_RETURN(VmDevice dev, parse_device(d, vm));
          out.push_back(std::move(dev));
        }
        return ok();
      }));
  if (!seen) return fail(VIX_E_OBJECT_NOT_FOUND, "vSphere: virtual machine " + vm + " not found");
  return out;
}

namespace {

std::string disk_device_xml(int32_t key, const std::string& file_name, const std::string& disk_mode,
                            int32_t controller_key, int32_t unit) {
  return "<device xsi:type=\"VirtualDisk\"><key>" + std::to_string(key) +
         "</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\">" +
         text_xml("fileName", file_name) + text_xml("diskMode", disk_mode) +
         "</backing><controllerKey>" + std::to_string(controller_key) +
         "</controllerKey><unitNumber>" + std::to_string(unit) + "</unitNumber></device>";
}

}  // namespace

Result<void> Client::attach_disk(const std::string& vm, const DiskAttachSpec& disk) {
  if (!xml_safe(disk.file_name) || !xml_safe(disk.disk_mode)) {
    return fail(VIX_E_INVALID_ARG, "attach " + disk.file_name + ": control characters");
  }
  // A negative key asks the server to assign one; it is read back from the device list.
  return run_task(
      "ReconfigVM_Task", {"VirtualMachine", vm},
      "<spec><deviceChange><operation>add</operation>" +
          disk_device_xml(-101, disk.file_name, disk.disk_mode, disk.controller_key, disk.unit) +
          "</deviceChange></spec>");
}

Result<void> Client::detach_disk(const std::string& vm, const VmDevice& disk) {
  if (!disk.is_disk()) {
    return fail(VIX_E_INVALID_ARG, "detach from " + vm + ": device " + std::to_string(disk.key) +
                                       " is a " + disk.type + ", not a disk");
  }
  if (!xml_safe(disk.file_name) || !xml_safe(disk.disk_mode)) {
    return fail(VIX_E_INVALID_ARG, "detach " + disk.file_name + ": control characters");
  }
  // The device as it was read back (real vCenter wants it whole), and no fileOperation: a
  // `destroy` would delete the disk's files.
  return run_task("ReconfigVM_Task", {"VirtualMachine", vm},
                  "<spec><deviceChange><operation>remove</operation>" +
                      disk_device_xml(disk.key, disk.file_name, disk.disk_mode, disk.controller_key,
                                      disk.unit) +
                      "</deviceChange></spec>");
}

}  // namespace vix::vsphere
