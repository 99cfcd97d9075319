// PLACEHOLDER until the VMDK engine lands (owner: vmdk engine engineer).
#include "vmdk/vmdk.h"

namespace vix::vmdk {
Result<std::unique_ptr<BlockDevice>> open(SourceOpener&, const std::string& path, const OpenOptions&) {
  return fail(VIX_E_NOT_SUPPORTED, path + ": VMDK engine not built yet");
}
}  // namespace vix::vmdk
