// ByteSource: where the bytes of one file come from (a local fd now, HTTP range reads later).
// SourceOpener: how a format engine reaches a file's siblings (VMDK extents, parent disks)
// without knowing whether they are local or remote.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace vix {

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // Reads up to len bytes at off. Returns fewer only at end of file. Thread-safe.
  virtual Result<size_t> pread(void* buf, size_t len, uint64_t off) = 0;
  // Writes all len bytes at off (extending the file if needed). Thread-safe.
  virtual Result<size_t> pwrite(const void* buf, size_t len, uint64_t off) = 0;
  virtual Result<uint64_t> size() = 0;
  // Makes every completed pwrite durable (fdatasync for local files).
  virtual Result<void> flush() = 0;
  virtual Result<void> truncate(uint64_t size) = 0;
  virtual bool writable() const = 0;
  // The path or URL, for error messages.
  virtual const std::string& name() const = 0;
  // The open descriptor of a local file read through the page cache, for splicing its bytes;
  // -1 for anything else (a network source, a file opened O_DIRECT).
  virtual int fd() const { return -1; }

  // Reads exactly len bytes or fails with VIX_E_DISK_INVAL naming `what` (short read = corrupt).
  Result<void> read_exact(void* buf, size_t len, uint64_t off, const char* what);
};

struct OpenMode {
  bool writable = false;
  bool direct = false;  // O_DIRECT where the source supports it (VIXDISKLIB_FLAG_OPEN_UNBUFFERED)
};

class SourceOpener {
 public:
  virtual ~SourceOpener() = default;
  // path is absolute, or relative to the opener's base (the process cwd for local files).
  virtual Result<std::unique_ptr<ByteSource>> open(const std::string& path, OpenMode mode) = 0;
  // Creates (or truncates, when exclusive is false) a writable file.
  virtual Result<std::unique_ptr<ByteSource>> create(const std::string& path, bool exclusive) = 0;
  virtual Result<void> remove(const std::string& path) = 0;
  virtual Result<void> rename(const std::string& from, const std::string& to) = 0;
  // Resolves `relative` against the directory that holds `base_file` (VMDK extent names and
  // parentFileNameHint are relative to the descriptor's directory).
  virtual std::string resolve(const std::string& base_file, const std::string& relative) const = 0;
};

// Local files: pread/pwrite on a file descriptor.
std::unique_ptr<SourceOpener> make_local_opener();

}  // namespace vix
