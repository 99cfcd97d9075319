#include "fs/tree.h"

#include <utility>

#include <sys/stat.h>
#include <unistd.h>

#include "fs/disk_file.h"

namespace vixfs {

Tree::Tree() {
  Node root;
  root.ino = FUSE_ROOT_ID;
  root.parent = FUSE_ROOT_ID;
  root.kind = NodeKind::kDir;
  clock_gettime(CLOCK_REALTIME, &root.mtime);
  nodes_.push_back(std::move(root));
}

fuse_ino_t Tree::add(fuse_ino_t parent, Node node) {
  std::lock_guard lock(mu_);
  if (parent == 0 || parent > nodes_.size() || nodes_[parent - 1].kind != NodeKind::kDir) return 0;
  if (nodes_[parent - 1].children.count(node.name)) return 0;
  node.ino = nodes_.size() + 1;
  node.parent = parent;
  if (node.mtime.tv_sec == 0) node.mtime = nodes_[parent - 1].mtime;
  nodes_[parent - 1].children[node.name] = node.ino;
  if (record_) changes_.push_back({parent, node.name});
  nodes_.push_back(std::move(node));
  return nodes_.back().ino;
}

fuse_ino_t Tree::add_dir(fuse_ino_t parent, const std::string& name) {
  Node n;
  n.kind = NodeKind::kDir;
  n.name = name;
  return add(parent, std::move(n));
}

fuse_ino_t Tree::add_text(fuse_ino_t parent, const std::string& name, std::string text) {
  Node n;
  n.kind = NodeKind::kTextFile;
  n.name = name;
  n.text = std::move(text);
  return add(parent, std::move(n));
}

fuse_ino_t Tree::add_generated(fuse_ino_t parent, const std::string& name,
                               std::function<std::string()> generate) {
  Node n;
  n.kind = NodeKind::kTextFile;
  n.name = name;
  n.text = generate();
  n.generate = std::move(generate);
  return add(parent, std::move(n));
}

fuse_ino_t Tree::add_disk(fuse_ino_t parent, const std::string& name,
                          std::shared_ptr<DiskFile> disk, timespec mtime, uint64_t stored_blocks) {
  Node n;
  n.kind = NodeKind::kDiskFile;
  n.name = name;
  n.disk = std::move(disk);
  n.mtime = mtime;
  n.stored_blocks = stored_blocks;
  return add(parent, std::move(n));
}

bool Tree::set_stored_blocks(fuse_ino_t ino, uint64_t blocks) {
  std::lock_guard lock(mu_);
  if (ino == 0 || ino > nodes_.size() || nodes_[ino - 1].kind != NodeKind::kDiskFile) return false;
  nodes_[ino - 1].stored_blocks = blocks;
  return true;
}

fuse_ino_t Tree::add_symlink(fuse_ino_t parent, const std::string& name, std::string target) {
  Node n;
  n.kind = NodeKind::kSymlink;
  n.name = name;
  n.text = std::move(target);
  return add(parent, std::move(n));
}

bool Tree::link(fuse_ino_t parent, const std::string& name, fuse_ino_t ino) {
  std::lock_guard lock(mu_);
  if (parent == 0 || parent > nodes_.size() || nodes_[parent - 1].kind != NodeKind::kDir) {
    return false;
  }
  if (ino == 0 || ino > nodes_.size() || nodes_[ino - 1].kind == NodeKind::kDir) return false;
  if (!nodes_[parent - 1].children.emplace(name, ino).second) return false;
  if (record_) changes_.push_back({parent, name});
  return true;
}

bool Tree::set_text(fuse_ino_t ino, std::string text) {
  std::lock_guard lock(mu_);
  if (ino == 0 || ino > nodes_.size() || nodes_[ino - 1].kind != NodeKind::kTextFile) return false;
  nodes_[ino - 1].text = std::move(text);
  return true;
}

bool Tree::unlink(fuse_ino_t parent, const std::string& name) {
  std::lock_guard lock(mu_);
  if (parent == 0 || parent > nodes_.size()) return false;
  Node& p = nodes_[parent - 1];
  if (p.children.erase(name) == 0) return false;
  clock_gettime(CLOCK_REALTIME, &p.mtime);
  if (record_) changes_.push_back({parent, name});
  return true;
}

void Tree::record_changes(bool on) {
  std::lock_guard lock(mu_);
  record_ = on;
  changes_.clear();
}

std::vector<Tree::Change> Tree::take_changes() {
  std::lock_guard lock(mu_);
  return std::exchange(changes_, {});
}

fuse_ino_t Tree::lookup(fuse_ino_t parent, const std::string& name) const {
  std::lock_guard lock(mu_);
  if (parent == 0 || parent > nodes_.size()) return 0;
  const Node& p = nodes_[parent - 1];
  if (name == ".") return parent;
  if (name == "..") return p.parent;
  auto it = p.children.find(name);
  return it == p.children.end() ? 0 : it->second;
}

bool Tree::get(fuse_ino_t ino, Node* out) const {
  std::lock_guard lock(mu_);
  if (ino == 0 || ino > nodes_.size()) return false;
  *out = nodes_[ino - 1];
  return true;
}

std::vector<Tree::Entry> Tree::list(fuse_ino_t dir) const {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  if (dir == 0 || dir > nodes_.size()) return out;
  for (const auto& [name, ino] : nodes_[dir - 1].children) {
    out.push_back({name, ino, nodes_[ino - 1].kind});
  }
  return out;
}

std::vector<std::shared_ptr<DiskFile>> Tree::disks() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<DiskFile>> out;
  for (const Node& n : nodes_) {
    if (n.disk) out.push_back(n.disk);
  }
  return out;
}

bool stat_needs_allocation(const Node& node) {
  return node.disk != nullptr && (node.stored_blocks == 0 || node.disk->writable());
}

struct stat node_stat(const Node& node) {
  struct stat st {};
  st.st_ino = node.ino;
  st.st_uid = getuid();
  st.st_gid = getgid();
  st.st_mtim = node.mtime;
  st.st_ctim = node.mtime;
  st.st_atim = node.mtime;
  st.st_blksize = 4096;
  switch (node.kind) {
    case NodeKind::kDir:
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = 2;
      break;
    case NodeKind::kTextFile:
      st.st_mode = S_IFREG | 0444;
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(node.text.size());
      st.st_blocks = (st.st_size + 511) / 512;
      break;
    case NodeKind::kSymlink:
      st.st_mode = S_IFLNK | 0777;
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(node.text.size());
      break;
    case NodeKind::kDiskFile:
      st.st_mode = S_IFREG | (node.disk && node.disk->writable() ? 0644 : 0444);
      st.st_nlink = 1;
      if (node.disk) {
        st.st_size = static_cast<off_t>(node.disk->size());
        const uint64_t learned = node.disk->allocated_blocks();
        st.st_blocks = static_cast<blkcnt_t>(learned != 0 ? learned : node.stored_blocks);
      }
      break;
  }
  return st;
}

}  // namespace vixfs
