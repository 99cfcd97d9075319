// The privileges the session holds on the tree's VMs, asked in one HasPrivilegeOnEntities at
// mount and after each inventory refresh (vsphere/privileges.h), so that an operation the server
// would refuse late and misleadingly is refused at once with the privilege's ID.
#include "common/log.h"
#include "fs/server_tree.h"
#include "vix/errors.h"

namespace vixfs {

namespace vs = vix::vsphere;

void ServerTree::check_privileges() {
  std::vector<std::string> vms;
  for (const auto& vm : inventory_.vms) vms.push_back(vm.moref);
  auto checked = vs::check_privileges(session_->client(), vms);
  vs::PrivilegeTable table;
  if (!checked.ok()) {
    vix::log::warn(folder_ + ": privileges not checked (operations are tried and the server " +
                   "decides): " + checked.error().message);
    table = vs::PrivilegeTable::unknown(checked.error().message);
  } else {
    table = std::move(checked).value();
    if (!table.known()) {
      vix::log::info(folder_ + ": privileges not checked: " + table.unknown_reason());
    }
  }
  // One line per VM that lacks something, at most kLines of them.
  constexpr size_t kLines = 20;
  size_t lacking = 0;
  for (const std::string& vm : vms) {
    std::string missing;
    for (const std::string& op : vs::privilege_operations()) {
      if (op == "hotadd" || op == "license") continue;  // the proxy VM's; nothing of ours
      for (const vs::MissingPrivilege& m : table.missing(op, vm)) {
        missing +=
            (missing.empty() ? "" : ", ") + op + " (" + m.privilege + " on " + m.entity + ")";
      }
    }
    if (missing.empty()) continue;
    if (++lacking <= kLines)
      vix::log::info(folder_ + "/" + vm + ": missing privileges: " + missing);
  }
  if (lacking > kLines) {
    vix::log::info(folder_ + ": " + std::to_string(lacking - kLines) +
                   " more VMs lack privileges (snapshot.json lists them per VM)");
  }
  std::vector<std::pair<fuse_ino_t, std::string>> texts;
  {
    std::lock_guard lock(mu_);
    privileges_ = std::move(table);
    for (const auto& e : snapshots_) texts.emplace_back(e->json, render_json(*e));
  }
  for (auto& [ino, text] : texts) tree_->set_text(ino, std::move(text));
}

vix::Result<void> ServerTree::privilege_check(const std::string& operation, const std::string& vm,
                                              const std::string& where) {
  vix::Result<void> r = vix::ok();
  {
    std::lock_guard lock(mu_);
    r = privileges_.check(operation, vm);
  }
  if (!r.ok() && !where.empty()) {
    vix::log::error(where + ": refused (EACCES): " + r.error().message);
  }
  return r;
}

}  // namespace vixfs
