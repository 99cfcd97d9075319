// MOUNTPOINT/.vixfs/stats.json: per disk (keyed by its path in the tree) what it served and what
// reached its transport, and the mount's totals per transport mode. Also logged on SIGUSR1.
#pragma once

#include <string>

#include "fs/tree.h"

namespace vixfs {

std::string render_stats(const Tree& tree);

}  // namespace vixfs
