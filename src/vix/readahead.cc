#include "vix/readahead.h"

#include <sys/mman.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/worker_pool.h"

namespace vix {
namespace readahead_detail {

// One chunk's memory; its bytes stay counted in the budget until the last holder (the chunk
// table, or a reader still copying out of an evicted chunk) lets go. Then the buffer goes to the
// budget's free list, still counted, for the next chunk of that size.
struct ChunkBuf {
  ChunkBuf(CacheBudget::Impl* impl, uint8_t* p, uint64_t n) : impl(impl), data(p), size(n) {}
  ~ChunkBuf();
  ChunkBuf(const ChunkBuf&) = delete;
  ChunkBuf& operator=(const ChunkBuf&) = delete;
  CacheBudget::Impl* impl;
  uint8_t* data;
  uint64_t size;
};

struct LruNode {
  ReadaheadDevice::State* st;
  uint64_t chunk;
};

enum class ChunkState { kQueued, kLoading, kReady, kFailed };

struct Entry {
  uint64_t chunk = 0;
  uint64_t bytes = 0;
  ChunkState state = ChunkState::kQueued;
  bool prefetch = false;  // issued by read-ahead rather than by a caller
  bool used = false;      // some caller wanted it (for wasted-bytes accounting)
  // Out of the table: a write or eviction overtook it. A load still finishing must not install
  // its bytes, which may predate the write; this is the per-chunk version check.
  bool detached = false;
  std::shared_ptr<ChunkBuf> buf;
  Error error;
  std::list<LruNode>::iterator lru;
  bool in_lru = false;
};

struct Stream {
  uint64_t next = 0;        // byte offset a continuing read starts at
  uint32_t window = 0;      // chunks to keep prefetched ahead; 0 = not (yet) sequential
  uint64_t horizon = 0;     // chunks below this were already queued for prefetch
  uint64_t last_chunk = 0;  // highest chunk this stream has read
  uint64_t trail = 0;       // chunks below this were released behind the stream
  uint64_t tick = 0;        // for replacing the least recently used stream
};

}  // namespace readahead_detail

using readahead_detail::ChunkBuf;
using readahead_detail::ChunkState;
using readahead_detail::Entry;
using readahead_detail::LruNode;
using readahead_detail::Stream;

namespace {

constexpr uint64_t kHugePage = 2u << 20;

// Memory for a chunk, or null. Chunks of whole 2 MiB go on transparent huge pages (asked for
// with madvise: Debian's default THP mode). A 4 MiB chunk is then 2 TLB entries, not 1024; on
// 4 KiB pages the copy from libcurl into https chunks, a page walk every 4 KiB, took 12% of the
// daemon's CPU in benchmark case 6 and 4% on huge pages. Freed with free_chunk_memory.
uint8_t* chunk_memory(uint64_t n) {
  const bool huge = n % kHugePage == 0;
  void* p = nullptr;
  if (posix_memalign(&p, huge ? kHugePage : 64, n) != 0) return nullptr;
  if (huge) madvise(p, n, MADV_HUGEPAGE);  // only advice: on failure the pages stay small
  return static_cast<uint8_t*>(p);
}
void free_chunk_memory(uint8_t* p) {
  free(p);
}

}  // namespace

struct CacheBudget::Impl {
  std::atomic<uint64_t> limit{0};
  std::atomic<uint64_t> used{0};
  std::atomic<uint64_t> peak{0};
  // Guards the LRU and the chunk tables and streams of every device on this budget.
  std::mutex mu;
  std::list<LruNode> lru;  // front: least recently used; only Ready, attached chunks
  // Released chunk buffers kept for reuse: a fresh 1 MiB allocation is an mmap and 256 page
  // faults, a recycled one is neither. Counted in `used`; a leaf lock (taken under `mu` or not).
  std::mutex free_mu;
  std::vector<std::pair<uint64_t, uint8_t*>> free_bufs;
  static constexpr size_t kMaxFree = 32;

  // Takes a free buffer of exactly n bytes (already counted in `used`), or null.
  uint8_t* take_free(uint64_t n) {
    std::lock_guard lock(free_mu);
    for (size_t i = free_bufs.size(); i-- > 0;) {
      if (free_bufs[i].first == n) {
        uint8_t* p = free_bufs[i].second;
        free_bufs.erase(free_bufs.begin() + static_cast<std::ptrdiff_t>(i));
        return p;
      }
    }
    return nullptr;
  }
  // Frees one cached buffer (oldest first); false if there was none.
  bool drop_free() {
    std::pair<uint64_t, uint8_t*> victim;
    {
      std::lock_guard lock(free_mu);
      if (free_bufs.empty()) return false;
      victim = free_bufs.front();
      free_bufs.erase(free_bufs.begin());
    }
    free_chunk_memory(victim.second);
    used.fetch_sub(victim.first);
    return true;
  }
  void give_back(uint8_t* p, uint64_t n) {
    {
      std::lock_guard lock(free_mu);
      if (free_bufs.size() < kMaxFree) {
        free_bufs.emplace_back(n, p);
        return;
      }
    }
    free_chunk_memory(p);
    used.fetch_sub(n);
  }
  ~Impl() {
    while (drop_free()) {
    }
  }
  std::unique_ptr<WorkerPool> pool;
};

struct ReadaheadDevice::State {
  CacheBudget* budget = nullptr;
  CacheBudget::Impl* impl = nullptr;
  BlockDevice* inner = nullptr;  // valid while the device lives; jobs only touch it when claimed
  ReadaheadOptions opt;
  uint64_t capacity_bytes = 0;
  uint64_t chunk_count = 0;
  std::condition_variable cv;  // a load finished (waits on impl->mu)
  std::unordered_map<uint64_t, std::shared_ptr<Entry>> table;
  std::vector<Stream> streams;
  uint64_t tick = 0;
  int inflight = 0;  // prefetch jobs reading from `inner` now
  bool closing = false;

  std::atomic<uint64_t> reads{0}, bytes_read{0}, hits{0}, misses{0}, prefetched_bytes{0},
      wasted_bytes{0}, transport_requests{0}, transport_bytes{0}, writes{0}, errors{0},
      prefetch_errors{0}, bypass_reads{0}, released_behind{0};

  uint64_t chunk_size(uint64_t c) const {
    return std::min(opt.chunk_bytes, capacity_bytes - c * opt.chunk_bytes);
  }
};

using State = ReadaheadDevice::State;

readahead_detail::ChunkBuf::~ChunkBuf() {
  impl->give_back(data, size);
}

namespace {

constexpr uint64_t kMiB = 1 << 20;

void note_peak(std::atomic<uint64_t>& peak, uint64_t value) {
  uint64_t cur = peak.load();
  while (value > cur && !peak.compare_exchange_weak(cur, value)) {
  }
}

// Takes the entry out of its table (lock held). Whoever still holds it keeps its bytes.
void drop_entry(CacheBudget::Impl& impl, State& st,
                std::unordered_map<uint64_t, std::shared_ptr<Entry>>::iterator it) {
  Entry& e = *it->second;
  if (e.in_lru) {
    impl.lru.erase(e.lru);
    e.in_lru = false;
  }
  if (e.state == ChunkState::kReady && e.prefetch && !e.used) st.wasted_bytes += e.bytes;
  if (e.state == ChunkState::kQueued) e.buf.reset();  // its job will see `detached` and skip
  e.detached = true;
  st.table.erase(it);
}

// Memory for one chunk, evicting least recently used chunks of any disk to make room (lock
// held). Null when even an empty LRU leaves no room: the caller reads around the cache.
std::shared_ptr<ChunkBuf> reserve(CacheBudget::Impl& impl, uint64_t n) {
  for (;;) {
    if (uint8_t* p = impl.take_free(n)) return std::make_shared<ChunkBuf>(&impl, p, n);
    if (impl.used.load() + n <= impl.limit.load()) break;
    if (impl.drop_free()) continue;
    if (impl.lru.empty()) return nullptr;
    LruNode victim = impl.lru.front();
    drop_entry(impl, *victim.st, victim.st->table.find(victim.chunk));
  }
  uint8_t* p = chunk_memory(n);
  if (p == nullptr) return nullptr;
  note_peak(impl.peak, impl.used.fetch_add(n) + n);
  return std::make_shared<ChunkBuf>(&impl, p, n);
}

// Reads a claimed entry (state kLoading) from the transport and publishes the outcome.
void load(State& st, const std::shared_ptr<Entry>& e) {
  const uint64_t sectors = e->bytes / kSectorSize;
  Result<void> r =
      st.inner->read(e->chunk * (st.opt.chunk_bytes / kSectorSize), sectors, e->buf->data);
  std::lock_guard lock(st.impl->mu);
  ++st.transport_requests;
  st.transport_bytes += e->bytes;
  if (r.ok()) {
    e->state = ChunkState::kReady;
    if (e->prefetch) st.prefetched_bytes += e->bytes;
    if (!e->detached) {
      e->lru = st.impl->lru.insert(st.impl->lru.end(), LruNode{&st, e->chunk});
      e->in_lru = true;
    } else if (e->prefetch && !e->used) {
      st.wasted_bytes += e->bytes;
    }
  } else {
    e->state = ChunkState::kFailed;
    e->error = std::move(r).error();
    e->buf.reset();
    ++st.errors;
    if (e->prefetch && !e->used) ++st.prefetch_errors;
    if (!e->detached) {
      auto it = st.table.find(e->chunk);
      if (it != st.table.end() && it->second == e) st.table.erase(it);
      e->detached = true;
    }
  }
  st.cv.notify_all();
}

void run_prefetch(const std::shared_ptr<State>& st, const std::shared_ptr<Entry>& e) {
  {
    std::lock_guard lock(st->impl->mu);
    if (e->state != ChunkState::kQueued || e->detached) return;  // claimed by a reader, or moot
    e->state = ChunkState::kLoading;
    ++st->inflight;
  }
  load(*st, e);
  std::lock_guard lock(st->impl->mu);
  if (st->closing) e->buf.reset();
  --st->inflight;
  st->cv.notify_all();
}

// A sequential stream reads each chunk once; the chunks it has read and left behind go back to
// the free list at once instead of waiting at the LRU's young end. The next prefetches reuse
// their buffers (no fresh page faults), and a long copy cannot push out the chunks that random
// readers keep coming back to. Concurrent readers of one stream arrive a little out of order, so
// only chunks a few behind the current read are released, and only those already read (lock
// held).
void release_behind(State& st, Stream& s, uint64_t first) {
  constexpr uint64_t kSlack = 4;
  constexpr uint64_t kMaxPerCall = 64;
  if (first < kSlack) return;
  const uint64_t upto = first - kSlack;
  if (upto > s.trail + kMaxPerCall) s.trail = upto - kMaxPerCall;
  for (; s.trail < upto; ++s.trail) {
    auto it = st.table.find(s.trail);
    if (it == st.table.end()) continue;
    // A chunk still loading is released by a later call, once it is ready: stepping past it
    // would leave it in the LRU, where a long scan piles such chunks up.
    if (it->second->state != ChunkState::kReady) break;
    if (it->second->used) ++st.released_behind;
    drop_entry(*st.impl, st, it);  // a skipped prefetch counts as wasted there
  }
}

// Stream detection and the prefetch plan for a read of bytes [b, end) (lock held). Queued entries
// go into the table now, so that readers find and coalesce with them; `jobs` are submitted once
// the lock is released.
void plan_prefetch(State& st, uint64_t b, uint64_t end, std::vector<std::shared_ptr<Entry>>* jobs) {
  const uint64_t cb = st.opt.chunk_bytes;
  const uint64_t last = (end - 1) / cb;
  ++st.tick;
  Stream* s = nullptr;
  for (Stream& cand : st.streams) {
    // A fresh stream must be continued exactly (a random read almost never is); an established
    // one tolerates the reordering of concurrent readers within a chunk.
    bool match = cand.window == 0 ? b == cand.next : b + cb >= cand.next && b <= cand.next + cb;
    if (match) {
      s = &cand;
      break;
    }
  }
  if (s == nullptr) {
    if (st.streams.size() < st.opt.max_streams) {
      s = &st.streams.emplace_back();
    } else {
      s = &*std::min_element(st.streams.begin(), st.streams.end(),
                             [](const Stream& x, const Stream& y) { return x.tick < y.tick; });
    }
    *s = Stream{end, 0, 0, last, b / cb, st.tick};
    return;
  }
  s->tick = st.tick;
  // A window of prefetched chunks must leave most of the budget to other streams and disks.
  const uint64_t budget_cap = std::max<uint64_t>(1, st.impl->limit.load() / cb / 4);
  const uint64_t max_window = std::min<uint64_t>(st.opt.max_window_chunks, budget_cap);
  if (s->window == 0) {
    s->window = 1;
  } else if (last > s->last_chunk) {
    s->window = static_cast<uint32_t>(std::min<uint64_t>(uint64_t{s->window} * 2, max_window));
  }
  s->last_chunk = std::max(s->last_chunk, last);
  s->next = std::max(s->next, end);
  release_behind(st, *s, b / cb);
  // The reader's own chunks go to the LRU's young end first, so that making room for the
  // prefetch does not evict what this read is about to copy.
  for (uint64_t c = b / cb; c <= last; ++c) {
    auto it = st.table.find(c);
    if (it != st.table.end() && it->second->in_lru) {
      st.impl->lru.splice(st.impl->lru.end(), st.impl->lru, it->second->lru);
    }
  }
  uint64_t c = std::max(s->horizon, last + 1);
  const uint64_t to = std::min(last + 1 + s->window, st.chunk_count);
  for (; c < to; ++c) {
    if (st.table.count(c) != 0) continue;
    auto buf = reserve(*st.impl, st.chunk_size(c));
    if (!buf) break;
    auto e = std::make_shared<Entry>();
    e->chunk = c;
    e->bytes = st.chunk_size(c);
    e->prefetch = true;
    e->buf = std::move(buf);
    st.table.emplace(c, e);
    jobs->push_back(std::move(e));
  }
  s->horizon = std::max(s->horizon, c);
}

}  // namespace

// ---- CacheBudget ----------------------------------------------------------------------------

CacheBudget::CacheBudget(uint64_t limit_bytes, size_t threads) : impl_(std::make_unique<Impl>()) {
  impl_->limit = limit_bytes;
  impl_->pool = std::make_unique<WorkerPool>(threads, WorkerPool::Pending::kDrop);
}

CacheBudget::~CacheBudget() {
  // Queued jobs hold device state; they are dropped before the mutex they would lock goes away.
  impl_->pool.reset();
}

std::shared_ptr<CacheBudget> CacheBudget::global(size_t threads) {
  static std::mutex mu;
  static std::shared_ptr<CacheBudget> budget;
  std::lock_guard lock(mu);
  if (!budget) budget = std::make_shared<CacheBudget>(256 * kMiB, threads);
  return budget;
}

uint64_t CacheBudget::limit() const {
  return impl_->limit.load();
}
uint64_t CacheBudget::used() const {
  return impl_->used.load();
}
uint64_t CacheBudget::peak() const {
  return impl_->peak.load();
}

void CacheBudget::set_limit(uint64_t bytes) {
  std::lock_guard lock(impl_->mu);
  impl_->limit = bytes;
  while (impl_->used.load() > bytes) {
    if (impl_->drop_free()) continue;
    if (impl_->lru.empty()) break;
    LruNode victim = impl_->lru.front();
    drop_entry(*impl_, *victim.st, victim.st->table.find(victim.chunk));
  }
}

// ---- ReadaheadDevice ------------------------------------------------------------------------

ReadaheadDevice::ReadaheadDevice(std::unique_ptr<BlockDevice> inner, ReadaheadOptions options,
                                 std::shared_ptr<CacheBudget> budget)
    : inner_(std::move(inner)), budget_(std::move(budget)), st_(std::make_shared<State>()) {
  options.chunk_bytes =
      std::max<uint64_t>(kSectorSize, options.chunk_bytes / kSectorSize * kSectorSize);
  options.max_window_chunks = std::max<uint32_t>(1, options.max_window_chunks);
  options.max_streams = std::max<uint32_t>(1, options.max_streams);
  st_->budget = budget_.get();
  st_->impl = &budget_->impl();
  st_->inner = inner_.get();
  st_->opt = options;
  st_->capacity_bytes = inner_->capacity_sectors() * kSectorSize;
  st_->chunk_count = (st_->capacity_bytes + options.chunk_bytes - 1) / options.chunk_bytes;
}

ReadaheadDevice::~ReadaheadDevice() {
  std::unique_lock lock(st_->impl->mu);
  st_->closing = true;
  while (!st_->table.empty()) {
    std::shared_ptr<Entry> e = st_->table.begin()->second;
    drop_entry(*st_->impl, *st_, st_->table.begin());
    // A finished prefetch job may still hold the entry for a moment; the memory goes back now.
    if (e->state == ChunkState::kReady) e->buf.reset();
  }
  st_->cv.wait(lock, [&] { return st_->inflight == 0; });
  // Whatever this disk freed is handed back to the system, not kept for the others.
  while (st_->impl->drop_free()) {
  }
}

ReadaheadStats ReadaheadDevice::snapshot() const {
  const State& s = *st_;
  ReadaheadStats r;
  r.chunk_bytes = s.opt.chunk_bytes;
  r.reads = s.reads.load();
  r.bytes_read = s.bytes_read.load();
  r.hits = s.hits.load();
  r.misses = s.misses.load();
  r.prefetched_bytes = s.prefetched_bytes.load();
  r.wasted_bytes = s.wasted_bytes.load();
  r.transport_requests = s.transport_requests.load();
  r.transport_bytes = s.transport_bytes.load();
  r.writes = s.writes.load();
  r.errors = s.errors.load();
  r.prefetch_errors = s.prefetch_errors.load();
  r.bypass_reads = s.bypass_reads.load();
  r.released_behind = s.released_behind.load();
  return r;
}

namespace {

// Chunk c once its bytes are in: from the table, waited for while a load is in flight, or loaded
// in the caller's thread. nullptr when the budget has no room for it; the caller then reads its
// part straight from the transport (bypass_read).
Result<std::shared_ptr<ChunkBuf>> ready_chunk(State& st, uint64_t c) {
  std::unique_lock lock(st.impl->mu);
  for (;;) {
    std::shared_ptr<Entry> e;
    auto it = st.table.find(c);
    if (it != st.table.end()) {
      e = it->second;
      if (e->state == ChunkState::kReady) {
        ++st.hits;
        e->used = true;
        if (e->in_lru) st.impl->lru.splice(st.impl->lru.end(), st.impl->lru, e->lru);
        return e->buf;
      }
      e->used = true;
      if (e->state == ChunkState::kLoading) {
        st.cv.wait(lock, [&] { return e->state != ChunkState::kLoading; });
        if (e->state == ChunkState::kReady) {
          ++st.hits;
          return e->buf;
        }
        // A failed prefetch is nobody's error yet: the caller tries for itself.
        if (e->prefetch) continue;
        return e->error;
      }
      // Queued for prefetch but not started: read it now rather than wait behind the queue.
      e->state = ChunkState::kLoading;
      e->prefetch = false;
    } else {
      std::shared_ptr<ChunkBuf> buf = reserve(*st.impl, st.chunk_size(c));
      if (!buf) return std::shared_ptr<ChunkBuf>();
      e = std::make_shared<Entry>();
      e->chunk = c;
      e->bytes = st.chunk_size(c);
      e->state = ChunkState::kLoading;
      e->used = true;
      e->buf = std::move(buf);
      st.table.emplace(c, e);
    }
    lock.unlock();
    ++st.misses;
    load(st, e);
    // Only this thread's load changes e->buf now (failure resets it): safe to read unlocked.
    if (e->state != ChunkState::kReady) return e->error;
    return e->buf;
  }
}

// [begin, end) read from the transport into dst, past the cache (its budget is full).
Result<void> bypass_read(State& st, uint64_t begin, uint64_t end, uint8_t* dst) {
  ++st.misses;
  ++st.bypass_reads;
  ++st.transport_requests;
  st.transport_bytes += end - begin;
  Result<void> r = st.inner->read(begin / kSectorSize, (end - begin) / kSectorSize, dst);
  if (!r.ok()) ++st.errors;
  return r;
}

Result<void> check_range(uint64_t capacity, uint64_t sector, uint64_t count, const char* what) {
  if (sector > capacity || count > capacity - sector) {
    return fail(VIX_E_DISK_OUTOFRANGE, std::string("read-ahead cache: ") + what + " of " +
                                           std::to_string(count) + " sectors at " +
                                           std::to_string(sector) + " past capacity " +
                                           std::to_string(capacity));
  }
  return ok();
}

}  // namespace

template <class Fn>
Result<void> ReadaheadDevice::serve(uint64_t sector, uint64_t count, Fn&& part) {
  State& st = *st_;
  VIX_TRY(check_range(capacity_sectors(), sector, count, "read"));
  if (count == 0) return ok();
  ++st.reads;
  const uint64_t b = sector * kSectorSize;
  const uint64_t end = b + count * kSectorSize;
  const uint64_t cb = st.opt.chunk_bytes;
  std::vector<std::shared_ptr<Entry>> jobs;
  {
    std::lock_guard lock(st.impl->mu);
    plan_prefetch(st, b, end, &jobs);
  }
  for (std::shared_ptr<Entry>& e : jobs) {
    st.impl->pool->submit([s = st_, e = std::move(e)] { run_prefetch(s, e); });
  }
  for (uint64_t c = b / cb; c <= (end - 1) / cb; ++c) {
    const uint64_t from = std::max(b, c * cb);
    const uint64_t to = std::min(end, (c + 1) * cb);
    VIX_ASSIGN_OR_RETURN(std::shared_ptr<ChunkBuf> chunk, ready_chunk(st, c));
    VIX_TRY(part(from, to, from - c * cb, std::move(chunk)));
  }
  st.bytes_read += end - b;
  return ok();
}

Result<void> ReadaheadDevice::read(uint64_t sector, uint64_t count, uint8_t* buf) {
  return serve(sector, count,
               [&](uint64_t from, uint64_t to, uint64_t off,
                   std::shared_ptr<ChunkBuf> chunk) -> Result<void> {
                 uint8_t* dst = buf + (from - sector * kSectorSize);
                 if (!chunk) return bypass_read(*st_, from, to, dst);
                 std::memcpy(dst, chunk->data + off, to - from);
                 return ok();
               });
}

Result<bool> ReadaheadDevice::map_to_host(uint64_t sector, uint64_t count,
                                          std::vector<HostPiece>* out) {
  const size_t first_piece = out->size();
  Result<void> r =
      serve(sector, count,
            [&](uint64_t from, uint64_t to, uint64_t off,
                std::shared_ptr<ChunkBuf> chunk) -> Result<void> {
              if (!chunk) {
                // No room in the budget: the part goes through a buffer of its own, as read()
                // would.
                std::shared_ptr<uint8_t[]> own(new (std::nothrow) uint8_t[to - from]);
                if (!own)
                  return fail(VIX_E_OUT_OF_MEMORY, "read-ahead cache: no memory for a read");
                VIX_TRY(bypass_read(*st_, from, to, own.get()));
                out->push_back({-1, 0, to - from, own.get(), own});
                return ok();
              }
              const uint8_t* mem = chunk->data + off;
              out->push_back({-1, 0, to - from, mem, std::move(chunk)});
              return ok();
            });
  if (!r.ok()) {
    out->resize(first_piece);
    return r.error();
  }
  return true;
}

Result<void> ReadaheadDevice::write(uint64_t sector, uint64_t count, const uint8_t* buf) {
  Result<void> r = inner_->write(sector, count, buf);
  ++st_->writes;
  if (count == 0 || !check_range(capacity_sectors(), sector, count, "write").ok()) return r;
  // Even a failed write may have changed some sectors: the touched chunks go either way.
  drop_chunks(sector, count);
  return r;
}

Result<void> ReadaheadDevice::unmap(uint64_t sector, uint64_t count) {
  VIX_TRY(check_range(capacity_sectors(), sector, count, "unmap"));
  if (count == 0) return inner_->unmap(sector, count);
  // Before: a chunk read earlier is not served once the device may have discarded its bytes.
  // After: a load that raced with the discard is detached and never installed (as for writes).
  drop_chunks(sector, count);
  Result<void> r = inner_->unmap(sector, count);
  if (!r.ok() && r.error().code == VIX_E_NOT_SUPPORTED) return r;  // nothing changed
  drop_chunks(sector, count);
  return r;
}

void ReadaheadDevice::drop_chunks(uint64_t sector, uint64_t count) {
  const uint64_t cb = st_->opt.chunk_bytes;
  const uint64_t first = sector * kSectorSize / cb;
  const uint64_t last = ((sector + count) * kSectorSize - 1) / cb;
  std::lock_guard lock(st_->impl->mu);
  if (last - first + 1 > st_->table.size()) {
    for (auto it = st_->table.begin(); it != st_->table.end();) {
      auto next = std::next(it);
      if (it->first >= first && it->first <= last) drop_entry(*st_->impl, *st_, it);
      it = next;
    }
  } else {
    for (uint64_t c = first; c <= last; ++c) {
      auto it = st_->table.find(c);
      if (it != st_->table.end()) drop_entry(*st_->impl, *st_, it);
    }
  }
}

}  // namespace vix
