#include "vix/range_lock.h"

namespace vix {

RangeLock::Guard::~Guard() {
  if (!owner_) return;
  {
    std::lock_guard lock(owner_->mu_);
    owner_->held_.erase(it_);
  }
  // Waiters for different ranges share one condition variable: all re-check.
  owner_->cv_.notify_all();
}

bool RangeLock::overlaps(uint64_t start, uint64_t end) const {
  for (const auto& h : held_) {
    if (start < h.end && h.start < end) return true;
  }
  return false;
}

RangeLock::Guard RangeLock::lock(uint64_t start, uint64_t end) {
  std::unique_lock lock(mu_);
  if (start >= end) return Guard(nullptr, held_.end());
  cv_.wait(lock, [&] { return !overlaps(start, end); });
  held_.push_back({start, end});
  return Guard(this, std::prev(held_.end()));
}

size_t RangeLock::held() const {
  std::lock_guard lock(mu_);
  return held_.size();
}

}  // namespace vix
