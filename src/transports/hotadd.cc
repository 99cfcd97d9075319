// Placeholder until the hotadd transport lands (being written now); replaced wholesale.
#include "transports/transport.h"

namespace vix {
namespace {
class Pending final : public Transport {
 public:
  std::string_view name() const override { return "hotadd"; }
  Result<std::unique_ptr<BlockDevice>> open(const TransportContext&, const std::string&,
                                            uint32_t) override {
    return fail(VIX_E_NOT_SUPPORTED, "hotadd: not available in this version of vixfs");
  }
};
}  // namespace
std::unique_ptr<Transport> make_hotadd_transport() { return std::make_unique<Pending>(); }
}  // namespace vix
