// NbdPool: the NBD connections of one open nbd/nbdssl disk, and how a request runs on them.
//
// Each request runs on one slot of the pool. A request that fails because its connection broke
// (dropped socket, protocol violation, reply timeout) waits with exponential back-off, reconnects
// the slot and is sent again, all within vixDiskLib.nfc.RequestTimeoutMs; an error the server
// answered (EIO, ENOSPC...) is returned as it is. A re-established connection must show the same
// export size, so a reply never comes from a different disk. nbd_device.cc is the BlockDevice
// over it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/worker_pool.h"
#include "transports/nbd.h"

namespace vix {

using NbdConnPtr = std::shared_ptr<nbd::Connection>;

// Connects and handshakes one connection to the settings' export (TLS for nbdssl, the request
// size).
Result<NbdConnPtr> connect_nbd(const NbdSettings& s, net::Deadline deadline);

// `first` and, when its server allows several connections (CAN_MULTI_CONN), up to
// settings.connections - 1 more opened next to it: every one that answered in time with the
// same export size.
std::vector<NbdConnPtr> connect_pool(const NbdSettings& s, NbdConnPtr first);

class NbdPool {
 public:
  // What a request does once it has a connection: all of it, or the piece [off, off+len).
  using Op = std::function<Result<void>(nbd::Connection&)>;
  using PieceOp = std::function<Result<void>(nbd::Connection&, uint64_t off, uint64_t len)>;

  // conns: at least one, the first being the one the export was checked on.
  NbdPool(NbdSettings s, std::vector<NbdConnPtr> conns);
  ~NbdPool();
  NbdPool(const NbdPool&) = delete;
  NbdPool& operator=(const NbdPool&) = delete;

  const NbdSettings& settings() const { return s_; }
  // Of the first connection; every later one must match its size.
  const nbd::ExportInfo& info() const { return info_; }
  size_t size() const { return slots_.size(); }
  uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  // How messages name the disk: "nbd: host:port export "name"".
  std::string where() const;

  // The slot for the next request that runs on one connection (round robin).
  size_t next_slot() { return rr_.fetch_add(1, std::memory_order_relaxed) % slots_.size(); }

  // Runs op over [off, off+len): cut into contiguous pieces, one per connection, run at once,
  // when no other request is in flight and it is large enough; else on one connection.
  Result<void> spread(uint64_t off, uint64_t len, const char* what, const PieceOp& op);

  // Runs op on the slot's connection; a broken connection is re-established (back-off, within
  // request_timeout_ms) and op sent again on the new one. off and len are for the messages.
  Result<void> with_retry(size_t slot, const char* what, uint64_t off, uint64_t len, const Op& op);

 private:
  struct Slot {
    NbdConnPtr conn;                // guarded by NbdPool::mu_
    std::timed_mutex reconnect_mu;  // one reconnect per slot at a time
  };

  NbdConnPtr get(size_t slot);
  Error lost_error(const char* what, uint64_t off, uint64_t len, net::Clock::time_point started,
                   const Error& last, int broke_again = 0);

  const NbdSettings s_;
  const nbd::ExportInfo info_;
  std::mutex mu_;
  std::vector<Slot> slots_;
  std::atomic<size_t> rr_{0};
  std::atomic<int> in_flight_{0};  // spread() calls running now
  std::atomic<uint64_t> reconnects_{0};
  // Large reads and writes are cut into pieces that run on different connections at once. The
  // caller's thread runs one piece; these threads run the others. Jobs never wait for other jobs,
  // so a full queue only delays, it cannot deadlock.
  std::unique_ptr<WorkerPool> workers_;
};

}  // namespace vix
