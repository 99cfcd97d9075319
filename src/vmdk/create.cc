// PLACEHOLDER until create lands (owner: create engineer).
#include "vmdk/vmdk.h"

namespace vix::vmdk {
Result<void> create(SourceOpener&, const std::string& path, const CreateOptions&) {
  return fail(VIX_E_NOT_SUPPORTED, path + ": create not built yet");
}
Result<void> create_child(SourceOpener&, const std::string&, const std::string& child_path,
                          VixDiskLibDiskType) {
  return fail(VIX_E_NOT_SUPPORTED, child_path + ": create_child not built yet");
}
}  // namespace vix::vmdk
