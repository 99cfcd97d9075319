// Exclusive locks over ranges of sectors: a writer holds the sectors it touches while it
// reads-modifies-writes partial edge sectors, so two writers sharing a sector never lose each
// other's bytes, while writers to disjoint ranges go on in parallel.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>

namespace vix {

class RangeLock {
 public:
  class Guard {
   public:
    Guard(Guard&& o) noexcept : owner_(o.owner_), it_(o.it_) { o.owner_ = nullptr; }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    Guard& operator=(Guard&&) = delete;
    ~Guard();

   private:
    friend class RangeLock;
    struct Held {
      uint64_t start, end;
    };
    Guard(RangeLock* owner, std::list<Held>::iterator it) : owner_(owner), it_(it) {}
    RangeLock* owner_;
    std::list<Held>::iterator it_;
  };

  // Blocks until no held range overlaps [start, end), then holds it until the Guard goes.
  // An empty range holds nothing and never waits.
  Guard lock(uint64_t start, uint64_t end);
  // Ranges held now (for tests).
  size_t held() const;

 private:
  bool overlaps(uint64_t start, uint64_t end) const;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Few writers at once (FUSE threads), so a list beats an interval tree.
  std::list<Guard::Held> held_;
};

}  // namespace vix
