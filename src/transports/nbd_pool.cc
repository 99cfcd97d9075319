// NbdPool: see nbd_pool.h. The connections of one disk, the reconnect of a broken one within
// the request budget, and the cutting of a lone large request into pieces over all of them.
#include "transports/nbd_pool.h"

#include <algorithm>
#include <condition_variable>
#include <thread>

#include "common/log.h"

namespace vix {

namespace {

// Pieces smaller than this go to one connection: splitting them costs more than it gains.
constexpr uint64_t kMinPiece = 256 * 1024;
// A request whose re-established connection breaks this many times fails at once.
constexpr int kMaxFreshFailures = 3;

net::Deadline earlier(net::Deadline a, net::Deadline b) {
  return std::min(a, b);
}

std::string describe(const NbdSettings& s) {
  return std::string(s.tls ? "nbdssl" : "nbd") + ": " + s.endpoint.display() + " export \"" +
         s.export_name + "\"";
}

}  // namespace

Result<NbdConnPtr> connect_nbd(const NbdSettings& s, net::Deadline deadline) {
  auto connected = net::connect_stream(s.endpoint, deadline);
  if (!connected.ok()) return std::move(connected).error();
  auto stream = std::move(connected).value();
  nbd::HandshakeOptions h;
  h.export_name = s.export_name;
  h.want_allocation = true;
  h.deadline = deadline;
  if (s.tls) {
    net::TlsOptions tls = s.tls_options;
    h.start_tls = [tls, deadline](std::unique_ptr<net::Stream> plain) {
      return net::start_tls(std::move(plain), tls, deadline);
    };
  }
  VIX_ASSIGN_OR_RETURN(auto conn, nbd::Connection::handshake(std::move(stream), h));
  conn->set_max_request(s.max_request);
  return NbdConnPtr(std::move(conn));
}

std::vector<NbdConnPtr> connect_pool(const NbdSettings& s, NbdConnPtr first) {
  const nbd::ExportInfo info = first->info();
  const std::string where = describe(s);
  std::vector<NbdConnPtr> pool{std::move(first)};
  const unsigned want = info.can_multi_conn() ? std::max(1u, s.connections) : 1u;
  if (want > 1) {
    // A server that accepts fewer clients (qemu-nbd --shared) leaves the extra ones hanging in
    // its backlog: give them a short handshake, in parallel, and go on with what answered.
    const net::Deadline extra =
        earlier(net::deadline_after_ms(s.accept_timeout_ms), net::deadline_after_ms(3000));
    std::vector<Result<NbdConnPtr>> extras(want - 1, Result<NbdConnPtr>(fail(VIX_E_FAIL, "")));
    std::vector<std::thread> threads;
    for (unsigned i = 0; i + 1 < want; ++i) {
      threads.emplace_back([&, i] { extras[i] = connect_nbd(s, extra); });
    }
    for (auto& t : threads) t.join();
    for (auto& r : extras) {
      if (r.ok() && (*r)->info().size == info.size) {
        pool.push_back(std::move(r).value());
      } else if (!r.ok()) {
        log::info(where + ": extra connection not opened: " + r.error().message);
      }
    }
  }
  return pool;
}

NbdPool::NbdPool(NbdSettings s, std::vector<NbdConnPtr> conns)
    : s_(std::move(s)), info_(conns.front()->info()), slots_(conns.size()) {
  for (size_t i = 0; i < conns.size(); ++i) slots_[i].conn = std::move(conns[i]);
  if (slots_.size() > 1) {
    workers_ = std::make_unique<WorkerPool>(slots_.size() - 1);
    (void)workers_->start_all();  // a thread that cannot start leaves its pieces to the others
  }
}

NbdPool::~NbdPool() {
  workers_.reset();  // before the connections: no job may outlive them
}

std::string NbdPool::where() const {
  return describe(s_);
}

NbdConnPtr NbdPool::get(size_t slot) {
  std::lock_guard lock(mu_);
  return slots_[slot].conn;
}

// Cuts [off, off+len) into contiguous pieces, one per connection, and runs them at once. Only
// a lone request is cut: when others are in flight (the read-ahead cache's prefetches), they
// already keep every connection busy, and cutting would queue their pieces behind the few
// worker threads: 4 connections then read at half the speed of one over a 2 ms link.
Result<void> NbdPool::spread(uint64_t off, uint64_t len, const char* what, const PieceOp& op) {
  if (len == 0) return ok();
  const size_t first = next_slot();
  const int others = in_flight_.fetch_add(1, std::memory_order_acq_rel);
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { n.fetch_sub(1, std::memory_order_acq_rel); }
  } leave{in_flight_};
  size_t n = others > 0 ? 1 : std::min<uint64_t>(slots_.size(), len / kMinPiece);
  if (n <= 1) {
    return with_retry(first, what, off, len, [&](nbd::Connection& c) { return op(c, off, len); });
  }
  // Piece boundaries on 4 KiB (or the server's minimum block) so every piece stays aligned.
  const uint64_t align = std::max<uint64_t>(4096, info_.min_block);
  const uint64_t piece = ((len / n) + align - 1) / align * align;
  struct Piece {
    uint64_t off, len;
    Result<void> result;
  };
  std::vector<Piece> pieces;
  for (uint64_t p = off; p < off + len; p += piece) {
    pieces.push_back({p, std::min(piece, off + len - p), ok()});
  }
  std::mutex done_mu;
  std::condition_variable done_cv;
  size_t pending = pieces.size() - 1;
  auto run = [&, what](size_t k) {
    Piece& pc = pieces[k];
    pc.result = with_retry((first + k) % slots_.size(), what, pc.off, pc.len,
                           [&](nbd::Connection& c) { return op(c, pc.off, pc.len); });
  };
  for (size_t k = 1; k < pieces.size(); ++k) {
    workers_->submit([&, k] {
      run(k);
      std::lock_guard lock(done_mu);
      if (--pending == 0) done_cv.notify_all();
    });
  }
  run(0);
  {
    std::unique_lock lock(done_mu);
    done_cv.wait(lock, [&] { return pending == 0; });
  }
  for (Piece& pc : pieces) {
    if (!pc.result.ok()) return std::move(pc.result).error();
  }
  return ok();
}

Result<void> NbdPool::with_retry(size_t slot, const char* what, uint64_t off, uint64_t len,
                                 const Op& op) {
  NbdConnPtr conn = get(slot);
  bool lost = false;
  int fresh_failures = 0;
  net::Deadline budget = net::kNoDeadline;
  int64_t backoff = s_.backoff_start_ms;
  Error last;
  const auto started = net::Clock::now();
  for (;;) {
    if (conn && !conn->broken()) {
      auto r = op(*conn);
      if (r.ok()) {
        if (lost) {
          log::info(where() + ": " + what + " at offset " + std::to_string(off) +
                    " completed after reconnecting");
        }
        return r;
      }
      if (!conn->broken()) return r;  // the server's answer, not a lost connection
      last = std::move(r).error();
      // A server that breaks every fresh connection on this request (a lying one, or one
      // that cannot serve it) is not waited for until the budget runs out.
      if (lost && ++fresh_failures >= kMaxFreshFailures) {
        return lost_error(what, off, len, started, last, fresh_failures);
      }
    } else if (conn) {
      last = fail(VIX_E_HOST_TCP_CONN_LOST, conn->peer() + ": connection broken");
    }
    if (!lost) {
      lost = true;
      budget = net::deadline_after_ms(s_.request_timeout_ms);
      log::warn(where() + ": " + what + " at offset " + std::to_string(off) + " (" +
                std::to_string(len) + " bytes) failed: " + last.message + "; reconnecting");
    }
    // Another request on this slot may be reconnecting it: wait for that, within our budget.
    std::unique_lock<std::timed_mutex> rlock(slots_[slot].reconnect_mu, std::defer_lock);
    if (budget == net::kNoDeadline) {
      rlock.lock();  // RequestTimeoutMs = 0: no limit
    } else if (!rlock.try_lock_until(budget)) {
      return lost_error(what, off, len, started, last);
    }
    NbdConnPtr current = get(slot);
    if (current && current != conn && !current->broken()) {
      conn = std::move(current);
      continue;
    }
    const auto now = net::Clock::now();
    if (now >= budget) return lost_error(what, off, len, started, last);
    const auto pause = std::chrono::milliseconds(backoff);
    std::this_thread::sleep_for(budget - now < pause ? budget - now : pause);
    backoff = std::min(backoff * 2, s_.backoff_cap_ms);
    const net::Deadline hs = earlier(budget, net::deadline_after_ms(s_.accept_timeout_ms));
    auto fresh = connect_nbd(s_, hs);
    if (!fresh.ok()) {
      last = std::move(fresh).error();
      conn = nullptr;
      continue;
    }
    NbdConnPtr c = std::move(fresh).value();
    if (c->info().size != info_.size) {
      // Never read from what may be another disk.
      return fail(VIX_E_HOST_TCP_CONN_LOST, where() +
                                                ": after reconnecting, the export's size is " +
                                                std::to_string(c->info().size) +
                                                " bytes instead of " + std::to_string(info_.size));
    }
    {
      std::lock_guard lock(mu_);
      slots_[slot].conn = c;
    }
    reconnects_.fetch_add(1, std::memory_order_relaxed);
    log::info(where() + ": reconnected to " + c->peer() + " after " +
              std::to_string(
                  std::chrono::duration_cast<std::chrono::milliseconds>(net::Clock::now() - started)
                      .count()) +
              " ms");
    conn = std::move(c);
  }
}

Error NbdPool::lost_error(const char* what, uint64_t off, uint64_t len,
                          net::Clock::time_point started, const Error& last, int broke_again) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(net::Clock::now() - started).count();
  const std::string why =
      broke_again > 0
          ? "the connection broke again after each of " + std::to_string(broke_again) +
                " reconnects (" + std::to_string(ms) + " ms)"
          : "connection lost, not re-established within " + std::to_string(ms) +
                " ms (vixDiskLib.nfc.RequestTimeoutMs = " + std::to_string(s_.request_timeout_ms) +
                ")";
  Error e = fail(VIX_E_HOST_TCP_CONN_LOST, where() + ": " + what + " at offset " +
                                               std::to_string(off) + " (" + std::to_string(len) +
                                               " bytes): " + why + ": " + last.message);
  log::warn(e.message);
  return e;
}

}  // namespace vix
