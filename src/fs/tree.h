// The mounted tree: inodes that live for the mount's life (numbers are never reused, so the
// kernel's lookup counts need no bookkeeping). Node kinds cover what both local mode and the
// server tree (folders per server/VM/snapshot, snapshot.json, by-name symlinks) need.
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vixfs {

class DiskFile;

enum class NodeKind { kDir, kDiskFile, kTextFile, kSymlink };

struct Node {
  fuse_ino_t ino = 0;
  fuse_ino_t parent = 0;
  NodeKind kind = NodeKind::kDir;
  std::string name;
  timespec mtime{};
  std::map<std::string, fuse_ino_t> children;  // kDir
  std::shared_ptr<DiskFile> disk;              // kDiskFile
  // kDiskFile: 512-byte blocks its files take at the source as the listing said (a server
  // disk's layoutEx), 0 when unknown. st_blocks until the disk's allocation map is learned; when
  // set, a stat needs no open to learn it.
  uint64_t stored_blocks = 0;
  std::string text;                       // kTextFile contents, kSymlink target
  std::function<std::string()> generate;  // kTextFile made anew at each open (stats.json)
};

class Tree {
 public:
  Tree();
  // The root directory, FUSE_ROOT_ID.
  fuse_ino_t root() const { return FUSE_ROOT_ID; }
  fuse_ino_t add_dir(fuse_ino_t parent, const std::string& name);
  fuse_ino_t add_text(fuse_ino_t parent, const std::string& name, std::string text);
  // A text file whose contents `generate` makes each time it is opened.
  fuse_ino_t add_generated(fuse_ino_t parent, const std::string& name,
                           std::function<std::string()> generate);
  fuse_ino_t add_disk(fuse_ino_t parent, const std::string& name, std::shared_ptr<DiskFile> disk,
                      timespec mtime, uint64_t stored_blocks = 0);
  // A disk file's stored_blocks, learned again (an inventory refresh).
  bool set_stored_blocks(fuse_ino_t ino, uint64_t blocks);
  fuse_ino_t add_symlink(fuse_ino_t parent, const std::string& name, std::string target);
  // A second name for a file (not a folder: the kernel allows a folder one parent): a snapshot
  // folder's @NAME twin holds the same disk files as its moRef folder. False when `ino` is a
  // folder or `name` is taken.
  bool link(fuse_ino_t parent, const std::string& name, fuse_ino_t ino);
  // Replaces a text file's contents (snapshot.json learns a disk's transport once it opens).
  bool set_text(fuse_ino_t ino, std::string text);
  // Takes a name out of its folder (an inventory refresh found it gone). The node itself stays,
  // so handles open on it keep working and its number is never reused.
  bool unlink(fuse_ino_t parent, const std::string& name);

  // Copies, so callers never hold a pointer into the table while it grows. 0 when absent.
  fuse_ino_t lookup(fuse_ino_t parent, const std::string& name) const;
  bool get(fuse_ino_t ino, Node* out) const;
  // Children of a directory in name order: (name, ino, kind).
  struct Entry {
    std::string name;
    fuse_ino_t ino;
    NodeKind kind;
  };
  std::vector<Entry> list(fuse_ino_t dir) const;
  // Every disk file, for unmount.
  std::vector<std::shared_ptr<DiskFile>> disks() const;

  // Names added to or taken out of folders since the last take_changes(), once recording is on
  // (after mount): the kernel's cached entries and listings of those are invalidated from them.
  struct Change {
    fuse_ino_t parent;
    std::string name;
  };
  void record_changes(bool on);
  std::vector<Change> take_changes();

 private:
  fuse_ino_t add(fuse_ino_t parent, Node node);
  mutable std::mutex mu_;
  std::vector<Node> nodes_;  // ino N at index N-1
  bool record_ = false;
  std::vector<Change> changes_;
};

// Attributes of a node as stat reports them (disk files ask their DiskFile for size/blocks;
// before their allocation is learned, st_blocks is stored_blocks).
struct stat node_stat(const Node& node);
// Whether stat of this node needs its disk opened first (its allocation map learned): a disk
// file whose source did not say how much it stores, or one that its policy lets take writes,
// whose mode depends on whether the transport that opens it can write.
bool stat_needs_allocation(const Node& node);

}  // namespace vixfs
