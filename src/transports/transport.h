// A transport turns (connection, disk path) into a BlockDevice, or says why it can't.
// chain.cc holds the one table of modes (name, factory, how it reaches the disk) and walks the
// connection's mode list left to right, keeping the first that opens. A mode is its own
// src/transports/<mode>.cc, which defines make_<mode>_transport(), and one line of that table.
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

// Every mode of the table, in its order (VDDK's default), as ListTransportModes reports it.
const std::vector<std::string>& known_transport_modes();
// The mode's name as a string literal of the mode table, which outlives every handle (what
// GetTransportMode returns); "unknown" for a name the table does not have.
const char* transport_static_name(std::string_view mode);
// A fresh transport of that mode, or nullptr for a name the table does not have. For opening
// through one mode without the chain's fallback (tests, tools); everything else goes through
// open_through_chain.
std::unique_ptr<Transport> make_transport(std::string_view mode);
// Parses "file:nbd" into modes; an unknown or empty mode is VIX_E_INVALID_ARG naming it.
Result<std::vector<std::string>> parse_transport_modes(const std::string& modes);
// Opens through the first mode that works; on failure the error lists every mode's reason.
// *winner receives the winning mode's name.
Result<std::unique_ptr<BlockDevice>> open_through_chain(const std::vector<std::string>& modes,
                                                        const TransportContext& ctx,
                                                        const std::string& path, uint32_t flags);

}  // namespace vix
