// PLACEHOLDER until the descriptor module lands (owner: create engineer).
#include "vmdk/descriptor.h"

namespace vix::vmdk {
Result<Descriptor> Descriptor::parse(std::string_view, const std::string& origin) {
  return fail(VIX_E_NOT_SUPPORTED, origin + ": descriptor parser not built yet");
}
std::string Descriptor::render() const { return {}; }
std::string Descriptor::ddb_value(const std::string&, const std::string& fallback) const {
  return fallback;
}
Result<std::string> rewrite_cid(std::string_view, uint32_t, const std::string& origin) {
  return fail(VIX_E_NOT_SUPPORTED, origin + ": not built yet");
}
Result<std::string> set_ddb_value(std::string_view, const std::string&, const std::string&,
                                  const std::string& origin) {
  return fail(VIX_E_NOT_SUPPORTED, origin + ": not built yet");
}
uint32_t new_content_id() { return 1; }
}  // namespace vix::vmdk
