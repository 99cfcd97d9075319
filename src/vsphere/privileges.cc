#include "vsphere/privileges.h"

#include <set>

#include "common/json.h"
#include "vsphere/client.h"
#include "vsphere/client_internal.h"

namespace vix::vsphere {

const std::vector<PrivilegeNeed>& privilege_needs() {
  using enum PrivilegeScope;
  static const std::vector<PrivilegeNeed> needs = {
      {"read", "VirtualMachine.Provisioning.DiskRandomRead", kVm},
      {"write", "VirtualMachine.Provisioning.DiskRandomAccess", kVm},
      {"download", "VirtualMachine.Provisioning.GetVmFiles", kVm},
      {"snapshot", "VirtualMachine.State.CreateSnapshot", kVm},
      {"remove-snapshot", "VirtualMachine.State.RemoveSnapshot", kVm},
      {"consolidate", "VirtualMachine.State.RemoveSnapshot", kVm},
      {"change-tracking", "VirtualMachine.Config.ChangeTracking", kVm},
      {"hotadd", "VirtualMachine.Config.AddExistingDisk", kVm},
      {"hotadd", "VirtualMachine.Config.AddNewDisk", kVm},
      {"hotadd", "VirtualMachine.Config.RemoveDisk", kVm},
      {"hotadd", "VirtualMachine.Config.AddRemoveDevice", kVm},
      {"hotadd", "VirtualMachine.Config.Resource", kVm},
      {"hotadd", "VirtualMachine.Config.Settings", kVm},
      {"hotadd", "Datastore.AllocateSpace", kDatastore},
      {"disable-methods", "Global.DisableMethods", kRoot},
      {"enable-methods", "Global.EnableMethods", kRoot},
      {"license", "Global.Licenses", kRoot},
  };
  return needs;
}

std::vector<std::string> privilege_operations() {
  std::vector<std::string> out;
  for (const PrivilegeNeed& n : privilege_needs()) {
    if (out.empty() || out.back() != n.operation) out.emplace_back(n.operation);
  }
  return out;
}

std::string privilege_refusal(const std::string& operation, const std::string& vm,
                              const MissingPrivilege& missing) {
  return operation + " on " + vm + ": missing privilege " + missing.privilege + " on " +
         missing.entity;
}

PrivilegeTable PrivilegeTable::unknown(std::string reason) {
  PrivilegeTable t;
  t.reason_ = std::move(reason);
  return t;
}

PrivilegeTable::PrivilegeTable(std::string root_folder, Answers answers)
    : known_(true), root_(std::move(root_folder)), answers_(std::move(answers)) {}

std::vector<MissingPrivilege> PrivilegeTable::missing(const std::string& operation,
                                                      const std::string& vm,
                                                      const std::string& datastore) const {
  std::vector<MissingPrivilege> out;
  if (!known_) return out;
  for (const PrivilegeNeed& n : privilege_needs()) {
    if (operation != n.operation) continue;
    const std::string& entity = n.scope == PrivilegeScope::kVm     ? vm
                                : n.scope == PrivilegeScope::kRoot ? root_
                                                                   : datastore;
    if (entity.empty()) continue;
    auto e = answers_.find(entity);
    if (e == answers_.end()) continue;
    auto p = e->second.find(n.privilege);
    if (p != e->second.end() && !p->second) out.push_back({operation, n.privilege, entity});
  }
  return out;
}

Result<void> PrivilegeTable::check(const std::string& operation, const std::string& vm,
                                   const std::string& datastore) const {
  auto m = missing(operation, vm, datastore);
  if (m.empty()) return ok();
  return fail(VIX_E_AUTHENTICATION_FAIL, privilege_refusal(operation, vm, m.front()));
}

std::string PrivilegeTable::json(const std::string& vm) const {
  if (!known_) return "{\"checked\":false,\"reason\":" + json_string(reason_) + "}";
  std::string out = "{\"checked\":true,\"missing\":[";
  bool first = true;
  for (const std::string& op : privilege_operations()) {
    if (op == "hotadd") continue;  // needed on the proxy VM, not on this one
    for (const MissingPrivilege& m : missing(op, vm)) {
      out += std::string(first ? "" : ",") + "{\"operation\":" + json_string(m.operation) +
             ",\"privilege\":" + json_string(m.privilege) + ",\"entity\":" + json_string(m.entity) +
             "}";
      first = false;
    }
  }
  return out + "]}";
}

Result<PrivilegeTable> parse_privilege_answers(const pugi::xml_node& response,
                                               const std::string& root_folder,
                                               const std::vector<std::string>& asked) {
  const std::string what = "vSphere HasPrivilegeOnEntities: ";
  std::set<std::string> wanted(asked.begin(), asked.end());
  PrivilegeTable::Answers answers;
  size_t count = 0, index = 0;
  for (pugi::xml_node r = response.first_child(); r; r = r.next_sibling()) {
    if (r.type() != pugi::node_element) continue;
    if (local_name(r) != "returnval") {
      return fail(VIX_E_INVALID_XML,
                  what + "unexpected element <" + std::string(local_name(r)) + "> in the answer");
    }
    const std::string where = what + "returnval[" + std::to_string(index++) + "]";
    pugi::xml_node entity = child(r, "entity");
    std::string ref = entity.child_value();
    if (!entity || ref.empty()) return fail(VIX_E_INVALID_XML, where + ".entity is missing");
    if (!wanted.count(ref)) {
      return fail(VIX_E_INVALID_XML, where + ".entity " + ref + " was not asked for");
    }
    auto& privs = answers[ref];
    for (pugi::xml_node a = r.first_child(); a; a = a.next_sibling()) {
      if (a.type() != pugi::node_element || local_name(a) != "privAvailability") continue;
      if (++count > kMaxPrivilegeAnswers) {
        return fail(VIX_E_FILE_TOO_BIG,
                    what + "more than " + std::to_string(kMaxPrivilegeAnswers) + " answers");
      }
      std::string id = child_text(a, "privId");
      if (id.empty()) return fail(VIX_E_INVALID_XML, where + ".privAvailability.privId is missing");
      pugi::xml_node g = child(a, "isGranted");
      if (!g) {
        return fail(VIX_E_INVALID_XML, where + ".privAvailability.isGranted is missing for " + id);
      }
      auto granted = parse_bool(g.child_value(), "isGranted");
      if (!granted.ok()) {
        return fail(VIX_E_INVALID_XML, where + " (" + id + "): " + granted.error().message);
      }
      privs[id] = *granted;
    }
  }
  return PrivilegeTable(root_folder, std::move(answers));
}

Result<PrivilegeTable> check_privileges(Client& client, const std::vector<std::string>& vms,
                                        const std::vector<std::string>& datastores) {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, client.service_content());
  if (sc.authorization_manager.empty() || sc.root_folder.empty()) {
    return PrivilegeTable::unknown("the server names no AuthorizationManager or root folder");
  }
  VIX_ASSIGN_OR_RETURN(std::string key, client.current_session_key());
  if (key.empty()) {
    return fail(VIX_E_HOST_NOT_CONNECTED,
                "vSphere HasPrivilegeOnEntities: no current session to check privileges of");
  }
  std::set<std::string> vm_privs, root_privs, ds_privs;
  for (const PrivilegeNeed& n : privilege_needs()) {
    (n.scope == PrivilegeScope::kVm     ? vm_privs
     : n.scope == PrivilegeScope::kRoot ? root_privs
                                        : ds_privs)
        .insert(n.privilege);
  }
  // One privId list for every entity: the call has no per-entity lists, and a few privileges
  // asked where they do not apply cost nothing.
  std::set<std::string> all = vm_privs;
  all.insert(root_privs.begin(), root_privs.end());
  all.insert(ds_privs.begin(), ds_privs.end());
  std::string body;
  std::vector<std::string> asked;
  for (const std::string& vm : vms) {
    body += moref_xml("entity", "VirtualMachine", vm);
    asked.push_back(vm);
  }
  for (const std::string& ds : datastores) {
    body += moref_xml("entity", "Datastore", ds);
    asked.push_back(ds);
  }
  body += moref_xml("entity", "Folder", sc.root_folder);
  asked.push_back(sc.root_folder);
  body += text_xml("sessionId", key);
  for (const std::string& p : all) body += text_xml("privId", p);
  auto r = client.call("HasPrivilegeOnEntities",
                       MoRef{"AuthorizationManager", sc.authorization_manager}, body);
  if (!r.ok()) {
    if (r.error().code == VIX_E_NOT_SUPPORTED) return PrivilegeTable::unknown(r.error().message);
    return std::move(r).error();
  }
  return parse_privilege_answers(r->body, sc.root_folder, asked);
}

}  // namespace vix::vsphere
