#include "vix/readahead.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "vix/readahead_policy.h"

namespace vix {
namespace readahead_detail {

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
  LruPos lru;
  bool in_lru = false;
};

}  // namespace readahead_detail

using readahead_detail::ChunkBuf;
using readahead_detail::ChunkState;
using readahead_detail::Entry;

struct ReadaheadDevice::State final : readahead_detail::ChunkOwner {
  State(CacheBudget* budget, BlockDevice* inner, const ReadaheadOptions& opt)
      : budget(budget),
        inner(inner),
        opt(opt),
        capacity_bytes(inner->capacity_sectors() * kSectorSize),
        chunk_count((capacity_bytes + opt.chunk_bytes - 1) / opt.chunk_bytes),
        policy(opt.chunk_bytes, chunk_count, opt.max_window_chunks, opt.max_streams) {}

  // The budget evicts one of this device's chunks (its mutex held).
  void evict(uint64_t chunk) override;

  CacheBudget* const budget;
  BlockDevice* const inner;  // valid while the device lives; jobs only touch it when claimed
  const ReadaheadOptions opt;
  const uint64_t capacity_bytes;
  const uint64_t chunk_count;
  std::condition_variable cv;  // a load finished (waits on the budget's mutex)
  // Guarded by the budget's mutex, like the policy's streams.
  std::unordered_map<uint64_t, std::shared_ptr<Entry>> table;
  StreamPolicy policy;
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

namespace {

// Takes the entry out of its table (lock held). Whoever still holds it keeps its bytes.
void drop_entry(State& st, std::unordered_map<uint64_t, std::shared_ptr<Entry>>::iterator it) {
  Entry& e = *it->second;
  if (e.in_lru) {
    st.budget->lru_erase(e.lru);
    e.in_lru = false;
  }
  if (e.state == ChunkState::kReady && e.prefetch && !e.used) st.wasted_bytes += e.bytes;
  if (e.state == ChunkState::kQueued) e.buf.reset();  // its job will see `detached` and skip
  e.detached = true;
  st.table.erase(it);
}

// Reads a claimed entry (state kLoading) from the transport and publishes the outcome.
void load(State& st, const std::shared_ptr<Entry>& e) {
  const uint64_t sectors = e->bytes / kSectorSize;
  Result<void> r =
      st.inner->read(e->chunk * (st.opt.chunk_bytes / kSectorSize), sectors, e->buf->data);
  std::lock_guard lock(st.budget->mutex());
  ++st.transport_requests;
  st.transport_bytes += e->bytes;
  if (r.ok()) {
    e->state = ChunkState::kReady;
    if (e->prefetch) st.prefetched_bytes += e->bytes;
    if (!e->detached) {
      e->lru = st.budget->lru_insert(&st, e->chunk);
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
    std::lock_guard lock(st->budget->mutex());
    if (e->state != ChunkState::kQueued || e->detached) return;  // claimed by a reader, or moot
    e->state = ChunkState::kLoading;
    ++st->inflight;
  }
  load(*st, e);
  std::lock_guard lock(st->budget->mutex());
  if (st->closing) e->buf.reset();
  --st->inflight;
  st->cv.notify_all();
}

// Carries out the policy's plan for a read of bytes [b, end) (lock held): releases the chunks the
// stream left behind, then queues the prefetches. Queued entries go into the table now, so that
// readers find and coalesce with them; `jobs` are submitted once the lock is released.
void plan_prefetch(State& st, uint64_t b, uint64_t end, std::vector<std::shared_ptr<Entry>>* jobs) {
  const ReadaheadPlan plan = st.policy.on_read(b, end, st.budget->limit());
  if (!plan.sequential) return;
  uint64_t c = plan.release_from;
  for (; c < plan.release_to; ++c) {
    auto it = st.table.find(c);
    if (it == st.table.end()) continue;
    // A chunk still loading is released by a later read, once it is ready: stepping past it
    // would leave it in the LRU, where a long scan piles such chunks up.
    if (it->second->state != ChunkState::kReady) break;
    if (it->second->used) ++st.released_behind;
    drop_entry(st, it);  // a skipped prefetch counts as wasted there
  }
  st.policy.released(plan, c);
  // The reader's own chunks go to the LRU's young end first, so that making room for the
  // prefetch does not evict what this read is about to copy.
  const uint64_t cb = st.opt.chunk_bytes;
  for (c = b / cb; c <= (end - 1) / cb; ++c) {
    auto it = st.table.find(c);
    if (it != st.table.end() && it->second->in_lru) st.budget->lru_touch(it->second->lru);
  }
  for (c = plan.prefetch_from; c < plan.prefetch_to; ++c) {
    if (st.table.count(c) != 0) continue;
    auto buf = st.budget->reserve(st.chunk_size(c));
    if (!buf) break;
    auto e = std::make_shared<Entry>();
    e->chunk = c;
    e->bytes = st.chunk_size(c);
    e->prefetch = true;
    e->buf = std::move(buf);
    st.table.emplace(c, e);
    jobs->push_back(std::move(e));
  }
  st.policy.prefetched(plan, c);
}

ReadaheadOptions normalized(ReadaheadOptions options) {
  options.chunk_bytes =
      std::max<uint64_t>(kSectorSize, options.chunk_bytes / kSectorSize * kSectorSize);
  options.max_window_chunks = std::max<uint32_t>(1, options.max_window_chunks);
  options.max_streams = std::max<uint32_t>(1, options.max_streams);
  return options;
}

}  // namespace

void ReadaheadDevice::State::evict(uint64_t chunk) {
  drop_entry(*this, table.find(chunk));
}

ReadaheadDevice::ReadaheadDevice(std::unique_ptr<BlockDevice> inner, ReadaheadOptions options,
                                 std::shared_ptr<CacheBudget> budget)
    : BlockDeviceWrapper(std::move(inner)),
      budget_(std::move(budget)),
      st_(std::make_shared<State>(budget_.get(), inner_.get(), normalized(options))) {}

ReadaheadDevice::~ReadaheadDevice() {
  std::unique_lock lock(budget_->mutex());
  st_->closing = true;
  while (!st_->table.empty()) {
    std::shared_ptr<Entry> e = st_->table.begin()->second;
    drop_entry(*st_, st_->table.begin());
    // A finished prefetch job may still hold the entry for a moment; the memory goes back now.
    if (e->state == ChunkState::kReady) e->buf.reset();
  }
  st_->cv.wait(lock, [&] { return st_->inflight == 0; });
  // Whatever this disk freed is handed back to the system, not kept for the others.
  budget_->release_free();
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
  std::unique_lock lock(st.budget->mutex());
  for (;;) {
    std::shared_ptr<Entry> e;
    auto it = st.table.find(c);
    if (it != st.table.end()) {
      e = it->second;
      if (e->state == ChunkState::kReady) {
        ++st.hits;
        e->used = true;
        if (e->in_lru) st.budget->lru_touch(e->lru);
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
      std::shared_ptr<ChunkBuf> buf = st.budget->reserve(st.chunk_size(c));
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
    std::lock_guard lock(st.budget->mutex());
    plan_prefetch(st, b, end, &jobs);
  }
  for (std::shared_ptr<Entry>& e : jobs) {
    st.budget->submit([s = st_, e = std::move(e)] { run_prefetch(s, e); });
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
  std::lock_guard lock(budget_->mutex());
  if (last - first + 1 > st_->table.size()) {
    for (auto it = st_->table.begin(); it != st_->table.end();) {
      auto next = std::next(it);
      if (it->first >= first && it->first <= last) drop_entry(*st_, it);
      it = next;
    }
  } else {
    for (uint64_t c = first; c <= last; ++c) {
      auto it = st_->table.find(c);
      if (it != st_->table.end()) drop_entry(*st_, it);
    }
  }
}

}  // namespace vix
