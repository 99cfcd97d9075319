#include "vix/cache_budget.h"

#include <sys/mman.h>

#include <cstdlib>

namespace vix {

using readahead_detail::ChunkBuf;
using readahead_detail::LruNode;

namespace {

constexpr uint64_t kMiB = 1 << 20;
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

void note_peak(std::atomic<uint64_t>& peak, uint64_t value) {
  uint64_t cur = peak.load();
  while (value > cur && !peak.compare_exchange_weak(cur, value)) {
  }
}

}  // namespace

readahead_detail::ChunkBuf::~ChunkBuf() {
  budget->give_back(data, size);
}

CacheBudget::CacheBudget(uint64_t limit_bytes, size_t threads)
    : limit_(limit_bytes),
      pool_(std::make_unique<WorkerPool>(threads, WorkerPool::Pending::kDrop)) {}

CacheBudget::~CacheBudget() {
  // Queued jobs hold device state; they are dropped before the mutex they would lock goes away.
  pool_.reset();
  release_free();
}

std::shared_ptr<CacheBudget> CacheBudget::global(size_t threads) {
  static std::mutex mu;
  static std::shared_ptr<CacheBudget> budget;
  std::lock_guard lock(mu);
  if (!budget) budget = std::make_shared<CacheBudget>(256 * kMiB, threads);
  return budget;
}

void CacheBudget::set_limit(uint64_t bytes) {
  std::lock_guard lock(mu_);
  limit_ = bytes;
  while (used_.load() > bytes) {
    if (drop_free()) continue;
    if (!evict_oldest()) break;
  }
}

std::shared_ptr<ChunkBuf> CacheBudget::reserve(uint64_t n) {
  for (;;) {
    if (uint8_t* p = take_free(n)) return std::make_shared<ChunkBuf>(this, p, n);
    if (used_.load() + n <= limit_.load()) break;
    if (drop_free()) continue;
    if (!evict_oldest()) return nullptr;
  }
  uint8_t* p = chunk_memory(n);
  if (p == nullptr) return nullptr;
  note_peak(peak_, used_.fetch_add(n) + n);
  return std::make_shared<ChunkBuf>(this, p, n);
}

bool CacheBudget::evict_oldest() {
  if (lru_.empty()) return false;
  const LruNode victim = lru_.front();
  victim.owner->evict(victim.chunk);  // takes it off the LRU
  return true;
}

void CacheBudget::release_free() {
  while (drop_free()) {
  }
}

uint8_t* CacheBudget::take_free(uint64_t n) {
  std::lock_guard lock(free_mu_);
  for (size_t i = free_bufs_.size(); i-- > 0;) {
    if (free_bufs_[i].first == n) {
      uint8_t* p = free_bufs_[i].second;
      free_bufs_.erase(free_bufs_.begin() + static_cast<std::ptrdiff_t>(i));
      return p;
    }
  }
  return nullptr;
}

bool CacheBudget::drop_free() {
  std::pair<uint64_t, uint8_t*> victim;
  {
    std::lock_guard lock(free_mu_);
    if (free_bufs_.empty()) return false;
    victim = free_bufs_.front();
    free_bufs_.erase(free_bufs_.begin());
  }
  free_chunk_memory(victim.second);
  used_.fetch_sub(victim.first);
  return true;
}

void CacheBudget::give_back(uint8_t* p, uint64_t n) {
  {
    std::lock_guard lock(free_mu_);
    if (free_bufs_.size() < kMaxFree) {
      free_bufs_.emplace_back(n, p);
      return;
    }
  }
  free_chunk_memory(p);
  used_.fetch_sub(n);
}

}  // namespace vix
