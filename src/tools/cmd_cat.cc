// vixdisk cat: the disk's raw bytes (or a byte range of them) to stdout or a file, through the
// copy engine of disk_copy.h (sparse into a regular file).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "tools/cli.h"
#include "tools/disk_copy.h"

namespace vixdisk {

int cmd_cat(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(
      args,
      {{"output", true, 'o'}, {"offset", true, 0}, {"length", true, 0}, {"block-size", true, 0}},
      &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 1) return usage_error("cat needs exactly one DISK");
  const std::string& path = parsed->positional[0];

  uint64_t offset = 0, block_size = kMiB;
  std::optional<uint64_t> length;
  if (parsed->has("offset")) {
    auto v = parse_size(parsed->get("offset"));
    if (!v) return usage_error("bad --offset '" + parsed->get("offset") + "'");
    offset = *v;
  }
  if (parsed->has("length")) {
    length = parse_size(parsed->get("length"));
    if (!length) return usage_error("bad --length '" + parsed->get("length") + "'");
  }
  if (parsed->has("block-size")) {
    auto v = parse_size(parsed->get("block-size"));
    if (!v || *v == 0 || *v % vix::kSectorSize != 0 || *v > 256 * kMiB)
      return usage_error("--block-size must be a multiple of 512 up to 256M");
    block_size = *v;
  }
  Sink sink;
  const bool to_file = parsed->has("output");
  if (!to_file && isatty(STDOUT_FILENO) == 1)
    return usage_error("refusing to write disk bytes to a terminal; use -o FILE or a pipe");
  if (to_file) {
    struct stat disk_st, out_st;
    if (stat(path.c_str(), &disk_st) == 0 && stat(parsed->get("output").c_str(), &out_st) == 0 &&
        disk_st.st_dev == out_st.st_dev && disk_st.st_ino == out_st.st_ino)
      return usage_error("output file is the disk itself");
  }

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  if (int rc = session.open(path, true); rc != kExitOk) return rc;
  vix::Disk& disk = session.disk();
  const vix::DiskInfo info = disk.info();
  const uint64_t capacity = info.capacity_sectors * vix::kSectorSize;
  if (offset > capacity)
    return usage_error("--offset " + std::to_string(offset) + " is past the end of the disk (" +
                       std::to_string(capacity) + " bytes)");
  if (length && *length > capacity - offset)
    return usage_error("--offset + --length go past the end of the disk (" +
                       std::to_string(capacity) + " bytes)");
  const uint64_t end = length ? offset + *length : capacity;

  if (to_file) {
    sink.name = parsed->get("output");
    sink.fd = ::open(sink.name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sink.fd < 0) return io_error("open " + sink.name, errno);
  }
  struct stat st;
  if (fstat(sink.fd, &st) != 0) return io_error("stat " + sink.name, errno);
  sink.seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
  sink.sparse = S_ISREG(st.st_mode) && to_file;

  // Holes can be skipped without reading only where the allocation map covers the whole chain
  // we see; a delta link's unallocated grains may hold its parent's data.
  const bool use_map = info.num_links <= 1;
  note(std::string("copying ") + std::to_string(end - offset) + " bytes" +
       (use_map ? ", skipping unallocated chunks" : "") + (sink.sparse ? ", sparse output" : ""));

  CopyOptions copy;
  copy.offset = offset;
  copy.end = end;
  copy.block_size = block_size;
  copy.use_map = use_map;
  copy.label = path;
  int rc = copy_disk(disk, sink, copy, nullptr);

  if (rc == kExitOk && sink.sparse && ftruncate(sink.fd, static_cast<off_t>(end - offset)) != 0)
    rc = io_error("truncate " + sink.name, errno);
  if (to_file && close(sink.fd) != 0 && rc == kExitOk) rc = io_error("close " + sink.name, errno);
  return rc;
}

}  // namespace vixdisk
