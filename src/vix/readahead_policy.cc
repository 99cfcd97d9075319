#include "vix/readahead_policy.h"

#include <algorithm>

namespace vix {

StreamPolicy::StreamPolicy(uint64_t chunk_bytes, uint64_t chunk_count, uint32_t max_window_chunks,
                           uint32_t max_streams)
    : chunk_bytes_(std::max<uint64_t>(1, chunk_bytes)),
      chunk_count_(chunk_count),
      max_window_(std::max<uint32_t>(1, max_window_chunks)),
      max_streams_(std::max<uint32_t>(1, max_streams)) {
  streams_.reserve(max_streams_);  // no allocation once reads run
}

ReadaheadPlan StreamPolicy::on_read(uint64_t begin, uint64_t end, uint64_t budget_bytes) {
  const uint64_t cb = chunk_bytes_;
  const uint64_t first = begin / cb;
  const uint64_t last = (end - 1) / cb;
  ReadaheadPlan plan;
  ++tick_;
  Stream* s = nullptr;
  for (Stream& cand : streams_) {
    // A fresh stream must be continued exactly (a random read almost never is); an established
    // one tolerates the reordering of concurrent readers within a chunk.
    const bool match =
        cand.window == 0 ? begin == cand.next : begin + cb >= cand.next && begin <= cand.next + cb;
    if (match) {
      s = &cand;
      break;
    }
  }
  if (s == nullptr) {
    if (streams_.size() < max_streams_) {
      s = &streams_.emplace_back();
    } else {
      s = &*std::min_element(streams_.begin(), streams_.end(),
                             [](const Stream& x, const Stream& y) { return x.tick < y.tick; });
    }
    *s = Stream{end, 0, 0, last, first, tick_};
    plan.stream = static_cast<uint32_t>(s - streams_.data());
    return plan;
  }
  plan.sequential = true;
  plan.stream = static_cast<uint32_t>(s - streams_.data());
  s->tick = tick_;
  // A window of prefetched chunks must leave most of the budget to other streams and disks.
  const uint64_t budget_cap = std::max<uint64_t>(1, budget_bytes / cb / 4);
  const uint64_t max_window = std::min<uint64_t>(max_window_, budget_cap);
  if (s->window == 0) {
    s->window = 1;
  } else if (last > s->last_chunk) {
    s->window = static_cast<uint32_t>(std::min<uint64_t>(uint64_t{s->window} * 2, max_window));
  }
  plan.window = s->window;
  s->last_chunk = std::max(s->last_chunk, last);
  s->next = std::max(s->next, end);
  // A sequential stream reads each chunk once: what it left behind goes back to the budget at
  // once instead of waiting at the LRU's young end, so the next prefetches reuse those buffers
  // (no fresh page faults) and a long copy cannot push out the chunks random readers keep coming
  // back to. Only chunks a few behind the current read: concurrent readers of one stream arrive a
  // little out of order.
  plan.release_from = plan.release_to = s->trail;
  if (first >= kReleaseSlack) {
    const uint64_t upto = first - kReleaseSlack;
    if (upto > s->trail + kMaxReleasePerRead) s->trail = upto - kMaxReleasePerRead;
    plan.release_from = s->trail;
    plan.release_to = upto;
  }
  plan.prefetch_from = std::max(s->horizon, last + 1);
  plan.prefetch_to = std::min(last + 1 + s->window, chunk_count_);
  return plan;
}

void StreamPolicy::released(const ReadaheadPlan& plan, uint64_t chunk) {
  streams_[plan.stream].trail = chunk;
}

void StreamPolicy::prefetched(const ReadaheadPlan& plan, uint64_t chunk) {
  Stream& s = streams_[plan.stream];
  s.horizon = std::max(s.horizon, chunk);
}

}  // namespace vix
