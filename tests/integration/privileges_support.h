// Restricted users set up through the real API (AddAuthorizationRole, SetEntityPermissions), for
// privileges_test.cc and doctor_test.cc. The simulator runs without -user, so any user/password
// pair logs in; a user that no permission names is the simulator's administrator
// (tests/vcsim/README.md), so the admin login used here needs no permission of its own.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "vsphere/client.h"
#include "vsphere/xml.h"

namespace vixtest {

// What a backup user usually gets, less the privileges a test wants refused.
inline std::vector<std::string> backup_privileges_without(const std::vector<std::string>& drop) {
  std::vector<std::string> all = {"VirtualMachine.Provisioning.DiskRandomRead",
                                  "VirtualMachine.Provisioning.DiskRandomAccess",
                                  "VirtualMachine.Provisioning.GetVmFiles",
                                  "VirtualMachine.State.CreateSnapshot",
                                  "VirtualMachine.State.RemoveSnapshot",
                                  "VirtualMachine.Config.ChangeTracking",
                                  "Global.DisableMethods",
                                  "Global.EnableMethods",
                                  "Global.Licenses"};
  std::vector<std::string> out;
  for (const auto& p : all) {
    if (std::find(drop.begin(), drop.end(), p) == drop.end()) out.push_back(p);
  }
  return out;
}

// AddAuthorizationRole as `admin`: the new role's id (-100 with a test failure on error).
inline int32_t add_role(vix::vsphere::Client& admin, const std::string& name,
                        const std::vector<std::string>& privileges) {
  auto sc = admin.service_content();
  EXPECT_TRUE(sc.ok()) << sc.error().message;
  if (!sc.ok()) return -100;
  std::string body = vix::vsphere::text_xml("name", name);
  for (const auto& p : privileges) body += vix::vsphere::text_xml("privIds", p);
  auto r =
      admin.call("AddAuthorizationRole", {"AuthorizationManager", sc->authorization_manager}, body);
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) return -100;
  auto id = vix::vsphere::parse_int(vix::vsphere::child_text(r->body, "returnval"), "returnval");
  EXPECT_TRUE(id.ok()) << id.error().message;
  return id.ok() ? static_cast<int32_t>(*id) : -100;
}

// SetEntityPermissions as `admin`: `user` gets `role` on `entity` (of `type`).
inline void set_permission(vix::vsphere::Client& admin, const std::string& type,
                           const std::string& entity, const std::string& user, int32_t role,
                           bool propagate) {
  auto sc = admin.service_content();
  ASSERT_TRUE(sc.ok()) << sc.error().message;
  std::string body = vix::vsphere::moref_xml("entity", type, entity) + "<permission>" +
                     vix::vsphere::text_xml("principal", user) + "<group>false</group><roleId>" +
                     std::to_string(role) + "</roleId><propagate>" +
                     (propagate ? "true" : "false") + "</propagate></permission>";
  auto r =
      admin.call("SetEntityPermissions", {"AuthorizationManager", sc->authorization_manager}, body);
  ASSERT_TRUE(r.ok()) << r.error().message;
}

}  // namespace vixtest
