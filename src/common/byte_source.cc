#include "common/byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vix {

namespace {

VixError errno_to_vix(int err) {
  switch (err) {
    case ENOENT:
      return VIX_E_FILE_NOT_FOUND;
    case EACCES:
    case EPERM:
      return VIX_E_FILE_ACCESS_ERROR;
    case EROFS:
      return VIX_E_FILE_READ_ONLY;
    case ENOSPC:
      return VIX_E_DISK_FULL;
    case EEXIST:
      return VIX_E_FILE_ALREADY_EXISTS;
    case EFBIG:
      return VIX_E_FILE_TOO_BIG;
    case ENAMETOOLONG:
      return VIX_E_FILE_NAME_INVALID;
    default:
      return VIX_E_FILE_ERROR;
  }
}

Error sys_error(const std::string& what, const std::string& name, int err) {
  return fail(errno_to_vix(err), name + ": " + what + ": " + std::strerror(err));
}

class LocalFile final : public ByteSource {
 public:
  LocalFile(int fd, std::string name, bool writable)
      : fd_(fd),
        name_(std::move(name)),
        writable_(writable),
        direct_((::fcntl(fd, F_GETFL) & O_DIRECT) != 0) {}
  ~LocalFile() override { ::close(fd_); }

  Result<size_t> pread(void* buf, size_t len, uint64_t off) override {
    size_t done = 0;
    auto* p = static_cast<char*>(buf);
    while (done < len) {
      ssize_t n = ::pread(fd_, p + done, len - done, static_cast<off_t>(off + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return sys_error("read at " + std::to_string(off + done), name_, errno);
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Result<size_t> pwrite(const void* buf, size_t len, uint64_t off) override {
    if (!writable_) return fail(VIX_E_FILE_READ_ONLY, name_ + ": opened read-only");
    size_t done = 0;
    auto* p = static_cast<const char*>(buf);
    while (done < len) {
      ssize_t n = ::pwrite(fd_, p + done, len - done, static_cast<off_t>(off + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return sys_error("write at " + std::to_string(off + done), name_, errno);
      }
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Result<uint64_t> size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return sys_error("stat", name_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Result<void> flush() override {
    if (!writable_) return ok();
    if (::fdatasync(fd_) != 0) return sys_error("fdatasync", name_, errno);
    return ok();
  }

  Result<void> truncate(uint64_t size) override {
    if (!writable_) return fail(VIX_E_FILE_READ_ONLY, name_ + ": opened read-only");
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return sys_error("truncate", name_, errno);
    return ok();
  }

  bool writable() const override { return writable_; }
  const std::string& name() const override { return name_; }
  int fd() const override { return direct_ ? -1 : fd_; }

 private:
  int fd_;
  std::string name_;
  bool writable_;
  bool direct_;  // splicing would read through the page cache the opener asked to bypass
};

class LocalOpener final : public SourceOpener {
 public:
  Result<std::unique_ptr<ByteSource>> open(const std::string& path, OpenMode mode) override {
    int flags = (mode.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    if (mode.direct) flags |= O_DIRECT;
    int fd = ::open(path.c_str(), flags);
    if (fd < 0 && mode.direct && errno == EINVAL) fd = ::open(path.c_str(), flags & ~O_DIRECT);
    if (fd < 0) return sys_error("open", path, errno);
    return std::unique_ptr<ByteSource>(new LocalFile(fd, path, mode.writable));
  }

  Result<std::unique_ptr<ByteSource>> create(const std::string& path, bool exclusive) override {
    int flags = O_RDWR | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
    int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return sys_error("create", path, errno);
    return std::unique_ptr<ByteSource>(new LocalFile(fd, path, true));
  }

  Result<void> remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return sys_error("unlink", path, errno);
    return ok();
  }

  Result<void> rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return sys_error("rename to " + to, from, errno);
    return ok();
  }

  std::string resolve(const std::string& base_file, const std::string& relative) const override {
    if (!relative.empty() && relative[0] == '/') return relative;
    auto slash = base_file.rfind('/');
    if (slash == std::string::npos) return relative;
    return base_file.substr(0, slash + 1) + relative;
  }
};

}  // namespace

Result<void> ByteSource::read_exact(void* buf, size_t len, uint64_t off, const char* what) {
  VIX_ASSIGN_OR_RETURN(size_t n, pread(buf, len, off));
  if (n != len) {
    return fail(VIX_E_DISK_INVAL, name() + ": " + what + " at byte " + std::to_string(off) +
                                      " lies past the end of the file");
  }
  return ok();
}

std::unique_ptr<SourceOpener> make_local_opener() {
  return std::make_unique<LocalOpener>();
}

}  // namespace vix
