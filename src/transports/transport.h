// A transport turns (connection, disk path) into a BlockDevice, or says why it can't.
// chain.cc walks the connection's mode list left to right and keeps the first that opens.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/block_device.h"
#include "common/config.h"
#include "common/result.h"
#include "vsphere/session.h"

namespace vix {

struct TransportContext {
  const ConnectSpec& spec;
  bool read_only;               // connection-level readOnly or VIXDISKLIB_FLAG_OPEN_READ_ONLY
  const std::string& snapshot;  // snapshot moRef, empty for the live disk
  const Config& config;
  RemoteSession* remote = nullptr;  // the vSphere session of a remote connection
};

// What VixDiskLib_Cleanup found of earlier sessions' leftovers (hotadd.h's cleanup).
struct CleanupResult {
  uint32_t cleaned_up = 0, remaining = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string_view name() const = 0;
  // flags: VIXDISKLIB_FLAG_OPEN_*. A failure says why this mode could not open the disk.
  virtual Result<std::unique_ptr<BlockDevice>> open(const TransportContext& ctx,
                                                    const std::string& path, uint32_t flags) = 0;
};

// Default mode order as ListTransportModes reports it, restricted to the modes this build has.
const std::vector<std::string>& known_transport_modes();
// Parses "file:nbd" into modes; an unknown or empty mode is VIX_E_INVALID_ARG naming it.
Result<std::vector<std::string>> parse_transport_modes(const std::string& modes);
// Opens through the first mode that works; on failure the error lists every mode's reason.
// *winner receives the winning mode's name.
Result<std::unique_ptr<BlockDevice>> open_through_chain(const std::vector<std::string>& modes,
                                                        const TransportContext& ctx,
                                                        const std::string& path, uint32_t flags);

std::unique_ptr<Transport> make_file_transport();
std::unique_ptr<Transport> make_https_transport();
std::unique_ptr<Transport> make_nbd_transport();
std::unique_ptr<Transport> make_nbdssl_transport();
std::unique_ptr<Transport> make_san_transport();
std::unique_ptr<Transport> make_hotadd_transport();

}  // namespace vix
