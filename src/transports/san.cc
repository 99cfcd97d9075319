// Placeholder until the san transport lands (being written now); replaced wholesale.
#include "transports/transport.h"

namespace vix {
namespace {
class Pending final : public Transport {
 public:
  std::string_view name() const override { return "san"; }
  Result<std::unique_ptr<BlockDevice>> open(const TransportContext&, const std::string&,
                                            uint32_t) override {
    return fail(VIX_E_NOT_SUPPORTED, "san: not available in this version of vixfs");
  }
};
}  // namespace
std::unique_ptr<Transport> make_san_transport() { return std::make_unique<Pending>(); }
}  // namespace vix
