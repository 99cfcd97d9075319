// The FUSE low-level callbacks over a Tree. Every callback replies exactly once and lets no
// exception out (one becomes EIO with a log line).
#pragma once

#include <fuse_lowlevel.h>

#include <functional>
#include <string>

#include "fs/tree.h"

namespace vixfs {

// The largest read (and write) the kernel sends. Not 1 MiB: a spliced reply must fit in one pipe,
// and libfuse sizes that pipe at the data plus a page per piece plus the header, which for 1 MiB
// of data is past the 1 MiB an unprivileged process may give a pipe (fs.pipe-max-size).
constexpr size_t kMaxRead = (1 << 20) - (64 << 10);

struct FsContext {
  Tree tree;
  // How long the kernel may keep entries and attributes (folders, disks, links): the local tree
  // never changes while mounted; the server tree's is its inventory TTL, and it tells the
  // kernel what a refresh changed (ServerTree::set_invalidate). Text files (snapshot.json,
  // stats.json) are never cached.
  double attr_timeout = 3600;
  // Called before a lookup or opendir: a tree that follows a changing inventory updates itself
  // here (at most once per its TTL). Empty for a fixed tree.
  std::function<void()> refresh;
  // mkdir and rmdir (a server's VM folders make and remove snapshots): 0 or an errno; -1, or
  // none set, for a folder that takes neither (EROFS). mkdir's new folder is looked up after.
  std::function<int(fuse_ino_t parent, const std::string&name)> make_dir, remove_dir;
  // Lets the kernel cache directory listings across opens.
  bool cache_dirs = true;
  // -o rw: disk files whose write policy allows it take writes (statfs drops ST_RDONLY).
  bool read_write = false;
};

const fuse_lowlevel_ops& fs_operations();

}  // namespace vixfs
