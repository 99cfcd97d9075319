// The FUSE low-level callbacks over a Tree. Every callback replies exactly once and lets no
// exception out (one becomes EIO with a log line).
#pragma once

#include <fuse_lowlevel.h>

#include "fs/tree.h"

namespace vixfs {

constexpr size_t kMaxRead = 1 << 20;

struct FsContext {
  Tree tree;
  double attr_timeout = 3600;  // the local tree never changes while mounted
};

const fuse_lowlevel_ops& fs_operations();

}  // namespace vixfs
