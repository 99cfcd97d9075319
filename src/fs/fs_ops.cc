#include "fs/fs_ops.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "fs/disk_file.h"
#include "fs/kernel_readahead.h"
#include "vix/library.h"

namespace vixfs {
namespace {

FsContext& ctx(fuse_req_t req) {
  return *static_cast<FsContext*>(fuse_req_userdata(req));
}

// Runs body; an escaping exception becomes EIO (body has not replied if it threw).
template <class F>
void guarded(fuse_req_t req, const char* op, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    vix::log::error(std::string(op) + ": " + e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    vix::log::error(std::string(op) + ": unknown exception");
    fuse_reply_err(req, EIO);
  }
}

bool writes(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

// libfuse splices a reply only through a pipe that holds all of it (the data, a page per piece,
// the header) and otherwise copies it through a buffer it allocates per reply. Without
// CAP_SYS_RESOURCE a pipe cannot grow past fs.pipe-max-size; the default, 1 MiB, holds a kMaxRead
// reply of up to 14 pieces.
bool pipe_holds_a_reply() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  const bool ok = fcntl(fds[0], F_SETPIPE_SZ, static_cast<int>(kMaxRead + 16 * 4096)) >= 0;
  close(fds[0]);
  close(fds[1]);
  return ok;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  (void)userdata;
  if ((conn->capable & FUSE_CAP_SPLICE_WRITE) && pipe_holds_a_reply())
    conn->want |= FUSE_CAP_SPLICE_WRITE;
  conn->max_read = kMaxRead;
  // max_pages follows max_write in libfuse: without it reads would stay at 128 KiB.
  conn->max_write = kMaxRead;
  conn->max_readahead = kMaxRead;
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // Write-through only: a write returns once it reached the disk library, so fsync has nothing
  // left in the kernel to push and a daemon crash loses no acknowledged write.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void reply_entry(fuse_req_t req, fuse_ino_t parent, const char* name) {
  FsContext& c = ctx(req);
  fuse_ino_t ino = c.tree.lookup(parent, name);
  Node node;
  if (ino == 0 || !c.tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
  if (stat_needs_allocation(node)) node.disk->learn_allocation();
  fuse_entry_param e{};
  e.ino = ino;
  e.attr = node_stat(node);
  e.attr_timeout = node.kind == NodeKind::kTextFile ? 0 : c.attr_timeout;
  e.entry_timeout = c.attr_timeout;
  fuse_reply_entry(req, &e);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "lookup", [&] {
    FsContext& c = ctx(req);
    if (c.refresh) c.refresh();
    reply_entry(req, parent, name);
  });
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "getattr", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (stat_needs_allocation(node)) node.disk->learn_allocation();
    struct stat st = node_stat(node);
    fuse_reply_attr(req, &st, node.kind == NodeKind::kTextFile ? 0 : ctx(req).attr_timeout);
  });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "setattr", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (!node.disk || !node.disk->writable()) return (void)fuse_reply_err(req, EROFS);
    // A disk's capacity is fixed (truncate, O_TRUNC, ftruncate): resizing is not a write.
    if ((to_set & FUSE_SET_ATTR_SIZE) &&
        static_cast<uint64_t>(attr->st_size) != node.disk->size()) {
      vix::log::error(node.disk->name() + ": size change to " + std::to_string(attr->st_size) +
                      " refused (EPERM): a disk's capacity is fixed");
      return (void)fuse_reply_err(req, EPERM);
    }
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
      return (void)fuse_reply_err(req, EPERM);
    }
    // Times are not stored; accepting them keeps cp -p and touch from failing.
    struct stat st = node_stat(node);
    fuse_reply_attr(req, &st, ctx(req).attr_timeout);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, "readlink", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (node.kind != NodeKind::kSymlink) return (void)fuse_reply_err(req, EINVAL);
    fuse_reply_readlink(req, node.text.c_str());
  });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, "opendir", [&] {
    FsContext& c = ctx(req);
    if (c.refresh) c.refresh();
    Node node;
    if (!c.tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (node.kind != NodeKind::kDir) return (void)fuse_reply_err(req, ENOTDIR);
    if (c.cache_dirs) {
      // ENOSYS tells the kernel (4.19+: no_opendir) to open folders by itself from now on, with
      // FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR: a warm `find` then costs no OPENDIR/RELEASEDIR
      // round trips (two per folder, 8000 for 1000 VMs x 3 snapshots). Lookups still start
      // the inventory refresh once entries expire, and a refresh that changes a folder
      // invalidates its cached listing.
      return (void)fuse_reply_err(req, ENOSYS);
    }
    fuse_reply_open(req, fi);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "readdir", [&] {
    FsContext& c = ctx(req);
    Node self;
    if (!c.tree.get(ino, &self)) return (void)fuse_reply_err(req, ENOENT);
    std::vector<Tree::Entry> entries{{".", ino, NodeKind::kDir},
                                     {"..", self.parent, NodeKind::kDir}};
    for (auto& e : c.tree.list(ino)) entries.push_back(std::move(e));
    std::vector<char> buf(size);
    size_t used = 0;
    for (size_t i = static_cast<size_t>(std::max<off_t>(off, 0)); i < entries.size(); ++i) {
      struct stat st {};
      st.st_ino = entries[i].ino;
      st.st_mode = entries[i].kind == NodeKind::kDir       ? S_IFDIR
                   : entries[i].kind == NodeKind::kSymlink ? S_IFLNK
                                                           : S_IFREG;
      size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].name.c_str(),
                                      &st, static_cast<off_t>(i + 1));
      if (need > size - used) break;
      used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, "open", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (node.kind == NodeKind::kDir) return (void)fuse_reply_err(req, EISDIR);
    if (writes(fi->flags) && !node.disk) return (void)fuse_reply_err(req, EROFS);
    if (node.disk) {
      apply_kernel_readahead();
      if (int rc = node.disk->acquire(writes(fi->flags)); rc < 0) {
        return (void)fuse_reply_err(req, -rc);
      }
      // A read-only disk is immutable for the mount's life: let the page cache keep it. A
      // writable one is not kept across opens (pages are written through while open).
      fi->keep_cache = node.disk->writable() ? 0 : 1;
      // FUSE's flush (close) carries no open flags: the handle remembers that it may write.
      fi->fh = writes(fi->flags) ? 1 : 0;
    } else {
      // snapshot.json changes once a disk opens (transport, capacity): no stale page cache.
      fi->direct_io = 1;
      if (node.generate) ctx(req).tree.set_text(ino, node.generate());
    }
    fuse_reply_open(req, fi);
  });
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "release", [&] {
    Node node;
    if (ctx(req).tree.get(ino, &node) && node.disk) node.disk->release();
    fuse_reply_err(req, 0);
  });
}

// Replies to a disk read from where its bytes already are: pieces of local files, which libfuse
// splices into the reply, or the read-ahead cache's chunks, written from there without a copy of
// our own. False when the disk cannot say where they are (the caller reads them instead).
bool reply_mapped(fuse_req_t req, DiskFile& disk, size_t size, off_t off) {
  // Holes go out as this, never written; .bss, so untouched pages cost no memory.
  static uint8_t zeros[kMaxRead];
  static thread_local std::vector<vix::HostPiece> pieces;
  // The pieces keep chunks and disks alive: let go of them once replied, whichever way.
  struct Release {
    ~Release() { pieces.clear(); }
  } release;
  const ssize_t n = disk.map_read(static_cast<uint64_t>(off), std::min(size, kMaxRead), &pieces);
  if (n < 0) return fuse_reply_err(req, static_cast<int>(-n)), true;
  if (n == 0) return false;
  auto memory = [](const vix::HostPiece& p) { return const_cast<uint8_t*>(p.mem ? p.mem : zeros); };
  const bool files = std::any_of(pieces.begin(), pieces.end(), [](auto& p) { return p.fd >= 0; });
  if (!files) {
    static thread_local std::vector<iovec> iov;
    iov.clear();
    for (const vix::HostPiece& p : pieces) iov.push_back({memory(p), p.bytes});
    fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
    return true;
  }
  using Bufvec = std::unique_ptr<fuse_bufvec, decltype(&free)>;
  Bufvec bufv(
      static_cast<fuse_bufvec*>(calloc(1, sizeof(fuse_bufvec) + pieces.size() * sizeof(fuse_buf))),
      &free);
  if (!bufv) return fuse_reply_err(req, ENOMEM), true;
  bufv->count = pieces.size();
  for (size_t i = 0; i < pieces.size(); ++i) {
    fuse_buf& b = bufv->buf[i];
    b.size = pieces[i].bytes;
    if (pieces[i].fd < 0) {
      b.mem = memory(pieces[i]);
    } else {
      // FD_RETRY: a short splice is continued, not taken for the end of the file.
      b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY);
      b.fd = pieces[i].fd;
      b.pos = static_cast<off_t>(pieces[i].offset);
    }
  }
  // No SPLICE_F_MOVE: the pages belong to the VMDK's page cache, which later reads want kept.
  fuse_reply_data(req, bufv.get(), static_cast<fuse_buf_copy_flags>(0));
  return true;
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "read", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (off < 0) return (void)fuse_reply_err(req, EINVAL);
    if (node.kind == NodeKind::kTextFile) {
      const size_t o = static_cast<size_t>(off);
      if (o >= node.text.size()) return (void)fuse_reply_buf(req, nullptr, 0);
      return (void)fuse_reply_buf(req, node.text.data() + o, std::min(size, node.text.size() - o));
    }
    if (!node.disk) return (void)fuse_reply_err(req, EISDIR);
    // Small reads gain nothing from a splice's extra calls (libfuse copies under 8 KiB anyway).
    constexpr size_t kMappedMin = 64 << 10;
    if (size >= kMappedMin && reply_mapped(req, *node.disk, size, off)) return;
    // One buffer per FUSE worker thread, kept: a fresh zero-filled vector per request cost a
    // memset and, for 1 MiB, page faults on every read (a fifth of the daemon's CPU under dd).
    static thread_local std::unique_ptr<uint8_t[]> buf;
    constexpr size_t kBufSize = kMaxRead * 2;
    if (!buf) buf.reset(new uint8_t[kBufSize]);
    ssize_t n = node.disk->read(static_cast<uint64_t>(off), std::min(size, kBufSize), buf.get());
    if (n < 0) return (void)fuse_reply_err(req, static_cast<int>(-n));
    fuse_reply_buf(req, reinterpret_cast<const char*>(buf.get()), static_cast<size_t>(n));
  });
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
  (void)fi;
  guarded(req, "write", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (!node.disk) return (void)fuse_reply_err(req, EROFS);
    if (off < 0) return (void)fuse_reply_err(req, EINVAL);
    ssize_t n =
        node.disk->write(static_cast<uint64_t>(off), size, reinterpret_cast<const uint8_t*>(buf));
    if (n < 0) return (void)fuse_reply_err(req, static_cast<int>(-n));
    fuse_reply_write(req, static_cast<size_t>(n));
  });
}

// fsync and fdatasync alike: the disk library's flush makes written data durable at the source.
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  (void)datasync, (void)fi;
  guarded(req, "fsync", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    fuse_reply_err(req, node.disk ? -node.disk->flush(false) : 0);
  });
}

// close(2) of a handle: what it wrote is flushed, so close reports a failure fsync would see.
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, "flush", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    fuse_reply_err(req, node.disk && fi->fh == 1 ? -node.disk->flush(true) : 0);
  });
}

// PUNCH_HOLE (always with KEEP_SIZE) and ZERO_RANGE both leave zeros in the range, so both
// discard it. Allocating (mode 0) is refused: a sparse VMDK or an NBD export cannot reserve
// space, and saying yes would promise writes that may still fail with ENOSPC.
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  fuse_file_info* fi) {
  (void)fi;
  guarded(req, "fallocate", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (!node.disk) return (void)fuse_reply_err(req, EROFS);
    if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
    const bool punch = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
    const bool zero = (mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE;
    if (!punch && !zero) return (void)fuse_reply_err(req, EOPNOTSUPP);
    const uint64_t off = static_cast<uint64_t>(offset), len = static_cast<uint64_t>(length);
    // Without KEEP_SIZE, zeroing past the end would grow the file: the disk's size is fixed.
    const uint64_t size = node.disk->size();
    if (zero && !(mode & FALLOC_FL_KEEP_SIZE) && (off >= size || len > size - off)) {
      return (void)fuse_reply_err(req, EFBIG);
    }
    fuse_reply_err(req, -node.disk->punch_hole(off, len));
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  (void)fi;
  guarded(req, "lseek", [&] {
    Node node;
    if (!ctx(req).tree.get(ino, &node)) return (void)fuse_reply_err(req, ENOENT);
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
    if (node.kind == NodeKind::kTextFile) {
      if (off < 0 || static_cast<size_t>(off) >= node.text.size()) {
        return (void)fuse_reply_err(req, ENXIO);
      }
      return (void)fuse_reply_lseek(
          req, whence == SEEK_DATA ? off : static_cast<off_t>(node.text.size()));
    }
    if (!node.disk) return (void)fuse_reply_err(req, EINVAL);
    off_t r = node.disk->seek(off, whence);
    if (r < 0) return (void)fuse_reply_err(req, static_cast<int>(-r));
    fuse_reply_lseek(req, r);
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 512;
  st.f_namemax = 255;
  st.f_flag = ctx(req).read_write ? 0 : ST_RDONLY;
  fuse_reply_statfs(req, &st);
}

// Everything that would change the tree.
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  fuse_reply_err(req, EROFS);
}
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t) {
  guarded(req, "mkdir", [&] {
    FsContext& c = ctx(req);
    const int rc = c.make_dir ? c.make_dir(parent, name) : -1;
    if (rc != 0) return (void)fuse_reply_err(req, rc < 0 ? EROFS : rc);
    reply_entry(req, parent, name);
  });
}
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "rmdir", [&] {
    FsContext& c = ctx(req);
    const int rc = c.remove_dir ? c.remove_dir(parent, name) : -1;
    fuse_reply_err(req, rc < 0 ? EROFS : rc);
  });
}
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int) {
  fuse_reply_err(req, EROFS);
}
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.open = op_open;
  ops.release = op_release;
  ops.read = op_read;
  ops.write = op_write;
  ops.fsync = op_fsync;
  ops.flush = op_flush;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  ops.statfs = op_statfs;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.create = op_create;
  ops.symlink = op_symlink;
  ops.link = op_link;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& fs_operations() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace vixfs
