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
  auto add = [&](const std::string& vm, const std::string& snap,
                 const std::vector<vix::vsphere::VirtualDisk>& list) {
    for (const auto& d : list) {
      const std::string path = d.file_name();
      const std::string local = sim.local_file(path);
      if (local.empty()) continue;
      out.push_back({vm, snap, path, local, d.capacity_bytes, d.key});
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
