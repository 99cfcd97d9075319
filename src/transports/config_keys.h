// The configuration keys of the transports, for vix::config_registry(). Each transport declares
// its keys in its .cc, next to the code that reads them, with a <file>_config_keys() list that
// the transport table in chain.cc gathers: adding a transport adds no line here.
#pragma once

#include "common/config_keys.h"

namespace vix {

// Every key of every transport (nbd.cc's once, for nbd and nbdssl).
KeyList transport_config_keys();

}  // namespace vix
