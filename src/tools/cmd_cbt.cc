// vixdisk cbt status|enable|disable VM: changed block tracking as vSphere keeps it for a VM
// (config.changeTrackingEnabled, each disk's backing.changeId). enable and disable reconfigure
// the VM and then stun it with a snapshot made and removed at once, as VMware documents: the
// setting takes effect only at a stun. The snapshot's description names this process, so a kill
// between the two leaves a snapshot that `vixdisk cleanup` removes.
#include <cstdio>
#include <string>

#include "tools/cli.h"
#include "vix/leftovers.h"
#include "vsphere/privileges.h"

namespace vixdisk {

namespace {

namespace vs = vix::vsphere;

void print_status(const vs::VirtualMachine& vm, bool json) {
  if (json) {
    std::string j = "{\"vm\": " + json_string(vm.moref) + ", \"name\": " + json_string(vm.name) +
                    ", \"changeTracking\": " + (vm.cbt_enabled ? "true" : "false") +
                    ", \"disks\": [";
    for (size_t i = 0; i < vm.disks.size(); ++i) {
      const vs::VirtualDisk& d = vm.disks[i];
      j += std::string(i ? ", " : "") + "{\"slot\": " + json_string(d.slot_name()) +
           ", \"file\": " + json_string(d.file_name()) +
           ", \"changeId\": " + (d.change_id.empty() ? "null" : json_string(d.change_id)) + "}";
    }
    printf("%s]}\n", j.c_str());
    return;
  }
  printf("%s (%s): change tracking %s\n", vm.name.c_str(), vm.moref.c_str(),
         vm.cbt_enabled ? "on" : "off");
  for (const vs::VirtualDisk& d : vm.disks) {
    printf("  %s  %s  changeId %s\n", d.slot_name().c_str(), d.file_name().c_str(),
           d.change_id.empty() ? "-" : d.change_id.c_str());
  }
}

// A snapshot made and removed at once, so that the VM picks up its new setting.
int stun(vs::Client& client, const vs::VirtualMachine& vm) {
  const std::string description =
      vix::snapshot_description(vix::this_process("vixdisk cbt"), vix::utc_now());
  auto snap = client.create_snapshot(vm.moref, "vixdisk-cbt", description, false, false);
  if (!snap.ok()) {
    fprintf(stderr,
            "vixdisk: warning: %s: no snapshot to apply the setting now (%s); it takes effect at "
            "the VM's next power on or snapshot\n",
            vm.moref.c_str(), snap.error().message.c_str());
    return kExitOk;
  }
  if (auto r = client.remove_snapshot(*snap, false); !r.ok()) {
    return vix_error("remove snapshot " + *snap + " (vixdisk cleanup removes it later)", r.error());
  }
  return kExitOk;
}

}  // namespace

int cmd_cbt(const std::vector<std::string>& args) {
  std::string error;
  std::vector<OptionSpec> options = server_option_specs();
  options.push_back({"json", false, 0});
  auto parsed = parse_args(args, options, &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 2)
    return usage_error("cbt needs status|enable|disable and a VM");
  const std::string action = parsed->positional[0];
  if (action != "status" && action != "enable" && action != "disable") {
    return usage_error("cbt " + action + ": status, enable or disable");
  }
  vix::ConnectSpec spec;
  if (!server_spec(*parsed, &spec, &error)) return usage_error("cbt " + error);

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  auto server = server_login(spec);
  if (!server.ok()) return vix_error("login " + spec.server, server.error());
  const vs::VirtualMachine* found = find_vm(*(*server)->inventory(), parsed->positional[1], &error);
  if (!found) return usage_error(error);
  const vs::VirtualMachine vm = *found;
  vs::Client& client = (*server)->client();

  if (action != "status") {
    // Refused before anything changes, naming the privilege.
    auto privileges = vs::check_privileges(client, {vm.moref});
    if (!privileges.ok()) return vix_error("privileges of " + vm.moref, privileges.error());
    for (const char* op : {"change-tracking", "snapshot", "remove-snapshot"}) {
      if (auto r = privileges->check(op, vm.moref); !r.ok()) return vix_error("cbt", r.error());
    }
    if (auto r = client.set_change_tracking(vm.moref, action == "enable"); !r.ok()) {
      return vix_error("cbt " + action + " " + vm.moref, r.error());
    }
    if (int rc = stun(client, vm); rc != kExitOk) return rc;
  }
  auto inv = (*server)->refresh_inventory();
  if (!inv.ok()) return vix_error("inventory of " + spec.server, inv.error());
  const vs::VirtualMachine* now = (*inv)->find_vm(vm.moref);
  if (!now) return vix_error("cbt", {VIX_E_OBJECT_NOT_FOUND, vm.moref + " is gone"});
  print_status(*now, parsed->has("json"));
  return kExitOk;
}

}  // namespace vixdisk
