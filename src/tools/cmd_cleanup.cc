// vixdisk cleanup: VixDiskLib_Cleanup by hand for one server — detaches the disks that killed
// processes of this host left hot-added to the proxy VM, removes the snapshots they made (with
// --user: that needs a login), and prints what it did; --dry-run only lists the snapshots.
#include <cstdio>
#include <string>

#include "tools/cli.h"
#include "vix/leftovers.h"
#include "vsphere/method_access.h"

namespace vixdisk {

int cmd_cleanup(const std::vector<std::string>& args) {
  std::string error;
  std::vector<OptionSpec> options = server_option_specs();
  options.push_back({"json", false, 0});
  options.push_back({"dry-run", false, 0});
  auto parsed = parse_args(args, options, &error);
  if (!parsed) return usage_error(error);
  if (!parsed->positional.empty()) return usage_error("cleanup takes no DISK");
  vix::ConnectSpec spec;
  if (!server_spec(*parsed, &spec, &error)) return usage_error(error);

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  const bool dry_run = parsed->has("dry-run");
  vix::CleanupResult r;
  if (!dry_run) {
    auto done = vix::cleanup(spec);
    if (!done.ok()) return vix_error("cleanup " + spec.server, done.error());
    r = *done;
  }
  std::vector<vix::Leftover> snapshots;
  std::vector<std::pair<std::string, std::string>> consolidation;  // moRef, name
  if (!spec.user.empty()) {
    auto server = server_login(spec);
    if (!server.ok()) return vix_error("login " + spec.server, server.error());
    const auto inventory = (*server)->inventory();
    snapshots = vix::remove_dead_snapshots((*server)->client(), *inventory, dry_run);
    // Reported, not run: consolidating is the VM owner's call (vixdisk consolidate). The flag is
    // read now, after the removals; the VMs are those of the login's inventory.
    std::vector<std::string> vms;
    for (const auto& vm : inventory->vms) vms.push_back(vm.moref);
    auto need = (*server)->client().needing_consolidation(vms);
    if (!need.ok()) return vix_error("consolidationNeeded", need.error());
    for (const std::string& moref : *need) {
      const auto* vm = inventory->find_vm(moref);
      consolidation.emplace_back(moref, vm ? vm->name : moref);
    }
  } else {
    note("snapshots left by dead processes not looked for: that needs --user");
  }
  std::string listed;
  for (const vix::Leftover& l : snapshots) {
    (l.removed ? r.cleaned_up : r.remaining) += 1;
    const std::string what = "snapshot " + l.snapshot + " '" + l.snapshot_name + "' of " +
                             l.vm_name + " (" + l.vm + "), left by " + l.maker.tool + " pid " +
                             std::to_string(l.maker.pid);
    // What that process may have disabled (PrepareForAccess) is enabled again with it.
    const std::string relocate =
        std::string(vix::vsphere::kRelocateMethod) + " for '" + vix::access_identity(l.maker) + "'";
    std::string methods;
    if (!l.vcenter) {
      // A standalone host: nothing was disabled.
    } else if (dry_run) {
      methods = "; would enable " + relocate + " again";
    } else if (l.enabled) {
      methods = "; enabled " + relocate + " again";
    } else {
      methods = "; could not enable " + relocate + " again: " + l.enable_error;
    }
    if (parsed->has("json")) {
      listed += std::string(listed.empty() ? "" : ", ") + "{\"vm\": " + json_string(l.vm) +
                ", \"snapshot\": " + json_string(l.snapshot) +
                ", \"name\": " + json_string(l.snapshot_name) +
                ", \"tool\": " + json_string(l.maker.tool) +
                ", \"pid\": " + std::to_string(l.maker.pid) +
                ", \"removed\": " + (l.removed ? "true" : "false") +
                (l.error.empty() ? std::string() : ", \"error\": " + json_string(l.error)) +
                ", \"methodsEnabled\": " + (l.enabled ? "true" : "false") +
                (l.enable_error.empty() ? std::string()
                                        : ", \"enableError\": " + json_string(l.enable_error)) +
                "}";
    } else if (dry_run) {
      printf("would remove %s%s\n", what.c_str(), methods.c_str());
    } else if (l.removed) {
      printf("removed %s%s\n", what.c_str(), methods.c_str());
    } else {
      printf("could not remove %s: %s%s\n", what.c_str(), l.error.c_str(), methods.c_str());
    }
  }
  std::string needing;
  for (const auto& [moref, name] : consolidation) {
    if (parsed->has("json")) {
      needing += std::string(needing.empty() ? "" : ", ") + "{\"vm\": " + json_string(moref) +
                 ", \"name\": " + json_string(name) + "}";
    } else {
      printf("needs consolidation: %s (%s): vixdisk consolidate %s\n", name.c_str(), moref.c_str(),
             moref.c_str());
    }
  }
  if (parsed->has("json")) {
    printf(
        "{\"cleaned\": %u, \"remaining\": %u, \"snapshots\": [%s], \"consolidationNeeded\": "
        "[%s]}\n",
        r.cleaned_up, r.remaining, listed.c_str(), needing.c_str());
  } else {
    printf("cleaned %u, remaining %u\n", r.cleaned_up, r.remaining);
  }
  return kExitOk;
}

}  // namespace vixdisk
