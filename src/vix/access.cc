// PrepareForAccess / EndAccess over vsphere/method_access: one login per call, as VDDK makes.
#include "common/log.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vsphere/method_access.h"

namespace vix {

namespace {

enum class Access { kPrepare, kEnd };

Result<void> change_access(const ConnectSpec& spec, const std::string& identity, Access what) {
  const std::string fn = what == Access::kPrepare ? "PrepareForAccess" : "EndAccess";
  if (spec.is_local()) return ok();  // no vCenter could move a local disk
  Library* lib = Library::get();
  if (lib == nullptr) return fail(VIX_E_DISK_NOINIT, fn + ": library not initialized");
  const std::string vm = vm_moref_from_vmx_spec(spec.vmx_spec);
  if (vm.empty()) {
    return fail(VIX_E_INVALID_ARG,
                fn + ": vmxSpec '" + spec.vmx_spec + "' names no virtual machine (moref=vm-NN)");
  }
  const Config config =
      lib->config().scoped(spec.config_scope.empty() ? spec.server : spec.config_scope);
  VIX_ASSIGN_OR_RETURN(std::shared_ptr<ServerSession> session, ServerSession::login(spec, config));
  vsphere::Client& client = session->client();
  VIX_ASSIGN_OR_RETURN(vsphere::ServiceContent sc, client.service_content());
  if (sc.api_type != "VirtualCenter") {
    log::info(fn + ": " + spec.server + " is " +
              (sc.full_name.empty() ? sc.api_type : sc.full_name) +
              ", not a vCenter: Storage vMotion of " + vm + " cannot be " +
              (what == Access::kPrepare ? "blocked" : "unblocked") + " there; nothing to do");
    return ok();
  }
  const std::vector<std::string> methods = {vsphere::kRelocateMethod};
  Result<void> r = what == Access::kPrepare
                       ? vsphere::disable_methods(client, vm, methods, identity)
                       : vsphere::enable_methods(client, vm, methods, identity);
  if (!r.ok()) return fail(r.error().code, fn + ": " + r.error().message);
  log::info(fn + ": " + std::string(vsphere::kRelocateMethod) + " of " + vm + " " +
            (what == Access::kPrepare ? "disabled" : "enabled again") + " for '" + identity + "'");
  return ok();
}

}  // namespace

Result<void> prepare_for_access(const ConnectSpec& spec, const std::string& identity) {
  return change_access(spec, identity, Access::kPrepare);
}

Result<void> end_access(const ConnectSpec& spec, const std::string& identity) {
  return change_access(spec, identity, Access::kEnd);
}

}  // namespace vix
