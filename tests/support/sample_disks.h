// The disks of the sample VMs of scripts/sample-vms as a simulator started with
// Simulator::start_with_samples lists them: each VM's current disks and each snapshot's, with
// the local file behind each datastore path, for tests that read every one against qemu-img.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "support/vsphere_sim.h"

namespace vixtest {

struct SampleDisk {
  std::string vm;              // moRef
  std::string snapshot;        // moRef, "" for current
  std::string datastore_path;  // "[LocalDS_0] DC0_H0_VM0/disk1.vmdk"
  std::string local;           // the file on the simulator's datastore
  uint64_t capacity = 0;
  int32_t key = 0;  // the VirtualDisk's device key
};

// The VMs scripts/sample-vms makes disks for (the VMFS6 one is created by its plan).
inline constexpr const char* kSampleVms[] = {"DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0",
                                             "DC0_C0_RP0_VM1", "DC0_C0_RP0_VMFS6"};

// Logs in as u/p and lists the sample VMs' disks; empty with *error set on failure.
std::vector<SampleDisk> sample_disks(const Simulator& sim, std::string* error);

}  // namespace vixtest
