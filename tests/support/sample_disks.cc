#include "support/sample_disks.h"

#include "vsphere/client.h"

namespace vixtest {

std::vector<SampleDisk> sample_disks(const Simulator& sim, std::string* error) {
  std::vector<SampleDisk> out;
  auto client = sim.login("u", "p", error);
  if (!client) return out;
  auto inv = client->inventory();
  if (!inv.ok()) {
    *error = inv.error().message;
    return out;
  }
  const std::string ds = sim.get("VCSIM_DS_LocalDS_0");
  auto add = [&](const std::string& vm, const std::string& snap,
                 const std::vector<vix::vsphere::VirtualDisk>& list) {
    for (const auto& d : list) {
      const std::string path = d.file_name();
      const size_t close = path.find("] ");
      if (close == std::string::npos) continue;
      out.push_back({vm, snap, path, ds + "/" + path.substr(close + 2), d.capacity_bytes, d.key});
    }
  };
  for (const auto& vm : inv->vms) {
    bool sample = false;
    for (const char* n : kSampleVms) sample = sample || vm.name == n;
    if (!sample) continue;
    add(vm.moref, "", vm.disks);
    for (const auto* s : vix::vsphere::flatten(vm.snapshots)) add(vm.moref, s->moref, s->disks);
  }
  return out;
}

}  // namespace vixtest
