// Blocking chosen methods of a VM while a backup reads its disks: what VDDK's PrepareForAccess
// and EndAccess do (docs/reference/vsphere-backup.md §4). vCenter keeps the calls out of its
// public WSDL (AuthorizationManager.DisableMethods / EnableMethods, urn:internalvim25); clients
// see the result in the VM's `disabledMethod` property.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace vix::vsphere {

class Client;

// The method a backup blocks: Storage vMotion would move the disks under the copy.
inline constexpr const char* kRelocateMethod = "RelocateVM_Task";

// Disables `methods` on `vm` for `source` (the caller's identity, which EnableMethods must
// repeat). A server that is not a vCenter cannot (VIX_E_NOT_SUPPORTED, naming the server type).
Result<void> disable_methods(Client& client, const std::string& vm,
                             const std::vector<std::string>& methods, const std::string& source);
Result<void> enable_methods(Client& client, const std::string& vm,
                            const std::vector<std::string>& methods, const std::string& source);

// The VM's disabledMethod property, as clients see it.
Result<std::vector<std::string>> disabled_methods(Client& client, const std::string& vm);

}  // namespace vix::vsphere
