// vixdisk cat: the disk's raw bytes (or a byte range of them) to stdout or a file.
// A reader thread fills large buffers while the main thread writes the previous ones, so disk
// reads and output writes overlap. Into a regular file the output is sparse: chunks the disk
// does not allocate are never read, all-zero blocks are never written, and ftruncate sets the size.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "tools/cli.h"
#include "tools/progress.h"

namespace vixdisk {

namespace {

constexpr size_t kSlots = 4;
constexpr size_t kZeroBlock = 4096;  // granularity of hole punching in the output

struct Chunk {
  uint64_t pos = 0, end = 0;  // disk byte range
  uint64_t first_sector = 0;
  bool hole = false;
  int slot = -1;
  std::optional<vix::Error> error;
};

// Ordered hand-over of filled chunks from the reader to the writer, with a fixed buffer pool.
class Pipeline {
 public:
  explicit Pipeline(size_t slot_bytes) {
    for (size_t i = 0; i < kSlots; ++i) {
      buffers_.emplace_back(slot_bytes);
      free_.push_back(static_cast<int>(i));
    }
  }
  uint8_t* buffer(int slot) { return buffers_[static_cast<size_t>(slot)].data(); }

  // -1 once the writer has given up.
  int acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stopped_ || !free_.empty(); });
    if (stopped_) return -1;
    int slot = free_.front();
    free_.pop_front();
    return slot;
  }
  void release(int slot) {
    if (slot < 0) return;
    std::lock_guard lock(mu_);
    free_.push_back(slot);
    cv_.notify_all();
  }
  void push(Chunk c) {
    std::lock_guard lock(mu_);
    ready_.push_back(std::move(c));
    cv_.notify_all();
  }
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  std::optional<Chunk> pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !ready_.empty(); });
    if (ready_.empty()) return std::nullopt;
    Chunk c = std::move(ready_.front());
    ready_.pop_front();
    return c;
  }
  void stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }

 private:
  std::vector<std::vector<uint8_t>> buffers_;
  std::deque<int> free_;
  std::deque<Chunk> ready_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false, stopped_ = false;
};

struct Sink {
  int fd = STDOUT_FILENO;
  std::string name = "stdout";
  bool seekable = false;  // pwrite at offsets; else one sequential stream
  bool sparse = false;    // a regular file: skip zero blocks, ftruncate at the end

  // 0 or an errno.
  int write_at(const uint8_t* p, size_t n, uint64_t off) const {
    while (n > 0) {
      ssize_t w = seekable ? pwrite(fd, p, n, static_cast<off_t>(off)) : write(fd, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (w == 0) return EIO;
      p += w;
      n -= static_cast<size_t>(w);
      off += static_cast<uint64_t>(w);
    }
    return 0;
  }

  // Writes only the runs of non-zero kZeroBlock-sized blocks (aligned to the output offset).
  int write_sparse(const uint8_t* p, size_t n, uint64_t off) const {
    size_t i = 0;
    while (i < n) {
      size_t block_end = std::min<size_t>(n, i + kZeroBlock - (off + i) % kZeroBlock);
      if (is_zero(p + i, block_end - i)) {
        i = block_end;
        continue;
      }
      size_t run_end = block_end;
      while (run_end < n) {
        size_t next = std::min<size_t>(n, run_end + kZeroBlock);
        if (is_zero(p + run_end, next - run_end)) break;
        run_end = next;
      }
      if (int e = write_at(p + i, run_end - i, off + i); e != 0) return e;
      i = run_end;
    }
    return 0;
  }
};

}  // namespace

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

  Pipeline pipe(block_size);
  std::thread reader([&] {
    AllocationCursor cursor(disk.device(), info.capacity_sectors);
    for (uint64_t pos = offset; pos < end;) {
      Chunk c;
      c.pos = pos;
      c.end = std::min(end, (pos / block_size + 1) * block_size);
      c.first_sector = pos / vix::kSectorSize;
      const uint64_t last = (c.end + vix::kSectorSize - 1) / vix::kSectorSize;
      pos = c.end;
      if (use_map) {
        auto any = cursor.any_allocated(c.first_sector, last);
        if (!any.ok()) {
          c.error = std::move(any).error();
          pipe.push(std::move(c));
          break;
        }
        c.hole = !*any;
      }
      if (!c.hole) {
        c.slot = pipe.acquire();
        if (c.slot < 0) break;
        if (auto r = disk.read(c.first_sector, last - c.first_sector, pipe.buffer(c.slot));
            !r.ok()) {
          c.error = std::move(r).error();
          pipe.push(std::move(c));
          break;
        }
      }
      pipe.push(std::move(c));
    }
    pipe.close();
  });

  int rc = kExitOk;
  std::vector<uint8_t> zeros;
  Progress progress("cat", end - offset);
  while (auto c = pipe.pop()) {
    if (c->error) {
      rc = vix_error("read " + path, *c->error);
      break;
    }
    const uint64_t out_off = c->pos - offset;
    const size_t n = c->end - c->pos;
    int err = 0;
    if (c->hole) {
      if (!sink.sparse) {
        if (zeros.empty()) zeros.resize(block_size);
        err = sink.write_at(zeros.data(), n, out_off);
      }
    } else {
      const uint8_t* data = pipe.buffer(c->slot) + (c->pos - c->first_sector * vix::kSectorSize);
      err = sink.sparse ? sink.write_sparse(data, n, out_off) : sink.write_at(data, n, out_off);
    }
    pipe.release(c->slot);
    if (err != 0) {
      rc = io_error("write " + sink.name, err);
      break;
    }
    progress.update(c->end - offset);
  }
  pipe.stop();
  reader.join();
  progress.finish();

  if (rc == kExitOk && sink.sparse && ftruncate(sink.fd, static_cast<off_t>(end - offset)) != 0)
    rc = io_error("truncate " + sink.name, errno);
  if (to_file && close(sink.fd) != 0 && rc == kExitOk) rc = io_error("close " + sink.name, errno);
  return rc;
}

}  // namespace vixdisk
