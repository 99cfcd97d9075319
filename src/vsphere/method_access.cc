#include "vsphere/method_access.h"

#include "vsphere/client.h"
#include "vsphere/client_internal.h"

namespace vix::vsphere {

namespace {

Result<MoRef> authorization_manager(Client& client, const std::string& what) {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, client.service_content());
  if (sc.api_type != "VirtualCenter") {
    return fail(VIX_E_NOT_SUPPORTED, "vSphere " + what + ": " +
                                         (sc.full_name.empty() ? sc.api_type : sc.full_name) +
                                         " is not a vCenter: only vCenter blocks methods");
  }
  if (sc.authorization_manager.empty()) {
    return fail(VIX_E_INVALID_XML,
                "vSphere " + what + ": the server names no AuthorizationManager");
  }
  return MoRef{"AuthorizationManager", sc.authorization_manager};
}

}  // namespace

Result<void> disable_methods(Client& client, const std::string& vm,
                             const std::vector<std::string>& methods, const std::string& source) {
  VIX_ASSIGN_OR_RETURN(MoRef am, authorization_manager(client, "DisableMethods"));
  std::string body = moref_xml("entity", "VirtualMachine", vm);
  for (const std::string& m : methods) {
    body += "<method>" + text_xml("method", m) + "</method>";
  }
  body += text_xml("sourceId", source);
  auto r = client.call_internal("DisableMethods", am, body);
  if (!r.ok()) return fail(r.error().code, vm + ": " + r.error().message);
  return ok();
}

Result<void> enable_methods(Client& client, const std::string& vm,
                            const std::vector<std::string>& methods, const std::string& source) {
  VIX_ASSIGN_OR_RETURN(MoRef am, authorization_manager(client, "EnableMethods"));
  std::string body = moref_xml("entity", "VirtualMachine", vm);
  for (const std::string& m : methods) body += text_xml("method", m);
  body += text_xml("sourceId", source);
  auto r = client.call_internal("EnableMethods", am, body);
  if (!r.ok()) return fail(r.error().code, vm + ": " + r.error().message);
  return ok();
}

Result<std::vector<std::string>> disabled_methods(Client& client, const std::string& vm) {
  std::vector<std::string> out;
  bool seen = false;
  VIX_TRY(client.retrieve(
      "<specSet>" + detail::prop_set("VirtualMachine", {"disabledMethod"}) + "<objectSet>" +
          moref_xml("obj", "VirtualMachine", vm) + "</objectSet></specSet>",
      [&](const ObjectContent& oc) -> Result<void> {
        if (oc.obj.value != vm) return ok();
        seen = true;
        for (pugi::xml_node n = oc.find("disabledMethod").first_child(); n; n = n.next_sibling()) {
          if (n.type() == pugi::node_element) out.emplace_back(n.child_value());
        }
        return ok();
      }));
  if (!seen) return fail(VIX_E_OBJECT_NOT_FOUND, "vSphere: virtual machine " + vm + " not found");
  return out;
}

}  // namespace vix::vsphere
