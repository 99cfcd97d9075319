// What a backup may leave on a server, as the tests count it: snapshots the tools made (found
// by their description, vix/leftovers.h) and a VM's disabled methods. Header-only: the support
// library does not link the disk library these come from; the test binaries do.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vix/leftovers.h"
#include "vsphere/client.h"
#include "vsphere/method_access.h"

namespace vixtest {

// Snapshots made by the tools (by `tool` only, when given), of every VM or of `vm`.
inline std::vector<vix::vsphere::Snapshot> tool_snapshots(vix::vsphere::Client& client,
                                                          const std::string& tool = "",
                                                          const std::string& vm = "") {
  std::vector<vix::vsphere::Snapshot> out;
  auto inv = client.inventory();
  EXPECT_TRUE(inv.ok()) << inv.error().message;
  if (!inv.ok()) return out;
  for (const auto& v : inv->vms) {
    if (!vm.empty() && v.moref != vm) continue;
    for (const vix::vsphere::Snapshot* s : vix::vsphere::flatten(v.snapshots)) {
      auto maker = vix::parse_snapshot_description(s->description);
      if (maker && (tool.empty() || maker->tool == tool)) out.push_back(*s);
    }
  }
  return out;
}

// The VM's disabled methods (wire names); a test failure and none when the server cannot say.
inline std::vector<std::string> disabled_methods(vix::vsphere::Client& client,
                                                 const std::string& vm) {
  auto m = vix::vsphere::disabled_methods(client, vm);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? *m : std::vector<std::string>{};
}

}  // namespace vixtest
