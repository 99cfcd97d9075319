#include "tools/disk_copy.h"

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

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

}  // namespace

// 0 or an errno.
int Sink::write_at(const uint8_t* p, size_t n, uint64_t off) const {
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

int Sink::write_sparse(const uint8_t* p, size_t n, uint64_t off) const {
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

int copy_disk(vix::Disk& disk, const Sink& sink, const CopyOptions& options, CopyStats* stats) {
  const vix::DiskInfo info = disk.info();
  const uint64_t offset = options.offset, end = options.end, block_size = options.block_size;
  const bool use_map = options.use_map;
  const std::string& path = options.label;
  Pipeline pipe(block_size);
  std::thread reader([&] {
    AllocationCursor cursor(disk.device(), info.capacity_sectors);
    for (uint64_t pos = offset; pos < end;) {
      if (options.cancel && options.cancel->load()) break;
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
  Progress progress(options.progress_label, end - offset);
  uint64_t copied_to = offset;
  while (auto c = pipe.pop()) {
    if (c->error) {
      rc = vix_error("read " + path, *c->error);
      break;
    }
    const uint64_t out_off = c->pos - offset;
    const size_t n = c->end - c->pos;
    int err = 0;
    if (c->hole) {
      if (zeros.empty() && (!sink.sparse || options.observe)) zeros.resize(block_size);
      if (!sink.sparse) err = sink.write_at(zeros.data(), n, out_off);
      if (options.observe) options.observe(zeros.data(), n);
    } else {
      const uint8_t* data = pipe.buffer(c->slot) + (c->pos - c->first_sector * vix::kSectorSize);
      err = sink.sparse ? sink.write_sparse(data, n, out_off) : sink.write_at(data, n, out_off);
      if (options.observe) options.observe(data, n);
      if (stats) stats->read_bytes += n;
    }
    copied_to = c->end;
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
  if (rc == kExitOk && copied_to < end && stats) stats->cancelled = true;
  return rc;
}

}  // namespace vixdisk
