// vixdisk consolidate: ConsolidateVMDisks_Task for a VM whose snapshot removal could not merge
// its delta disks (runtime.consolidationNeeded), then the flag read again.
#include <cstdio>
#include <string>

#include "tools/cli.h"

namespace vixdisk {

int cmd_consolidate(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(args, server_option_specs(), &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 1) return usage_error("consolidate needs one VM");
  vix::ConnectSpec spec;
  if (!server_spec(*parsed, &spec, &error)) return usage_error("consolidate " + error);

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  auto server = server_login(spec);
  if (!server.ok()) return vix_error("login " + spec.server, server.error());
  const vix::vsphere::VirtualMachine* vm =
      find_vm(*(*server)->inventory(), parsed->positional[0], &error);
  if (!vm) return usage_error(error);
  vix::vsphere::Client& client = (*server)->client();
  auto before = client.needing_consolidation({vm->moref});
  if (!before.ok()) return vix_error("consolidationNeeded of " + vm->moref, before.error());
  if (auto r = client.consolidate_disks(vm->moref); !r.ok()) {
    return vix_error("consolidate " + vm->moref, r.error());
  }
  auto after = client.needing_consolidation({vm->moref});
  if (!after.ok()) return vix_error("consolidationNeeded of " + vm->moref, after.error());
  printf("consolidated %s (%s): %s\n", vm->name.c_str(), vm->moref.c_str(),
         !after->empty()   ? "still needs consolidation"
         : before->empty() ? "it did not need it"
                           : "no longer needs consolidation");
  return after->empty() ? kExitOk : kExitVix;
}

}  // namespace vixdisk
