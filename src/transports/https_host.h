// The https transport's host path (internal to src/transports): against a vCenter, the options
// that read a disk's files straight from the ESXi host that runs its VM, with a generic service
// ticket per file URL instead of the vCenter session cookie.
#pragma once

#include <string>

#include "common/result.h"
#include "transports/https.h"
#include "transports/transport.h"

namespace vix {

// `base` (the vCenter path's options) turned to the VM's host: its address and port, its
// certificate's thumbprint pinned, dcPath ha-datacenter, tickets from the vCenter session. An
// error says why the host cannot be read directly (no host, no thumbprint, ...).
Result<HttpsOptions> host_https_options(const TransportContext& ctx, const HttpsOptions& base);

}  // namespace vix
