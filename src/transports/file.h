// The "file" transport: a disk reachable as local files (a local .vmdk path, or a datastore
// path whose datastore is a local folder or mapped to one), opened by the VMDK engine locally.
#pragma once

#include "transports/transport.h"

namespace vix {

class FileTransport final : public Transport {
 public:
  std::string_view name() const override { return "file"; }
  Result<std::unique_ptr<BlockDevice>> open(const TransportContext& ctx, const std::string& path,
                                            uint32_t flags) override;
};

}  // namespace vix
