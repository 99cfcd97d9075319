// NbdDevice: the BlockDevice of the nbd and nbdssl transports, over a pool of NBD connections.
//
// Each request runs on one slot of the pool. A request that fails because its connection broke
// (dropped socket, protocol violation, reply timeout) waits with exponential back-off, reconnects
// the slot and is sent again, all within vixDiskLib.nfc.RequestTimeoutMs; an error the server
// answered (EIO, ENOSPC...) is returned as it is. A re-established connection must show the same
// export size, so a reply never comes from a different disk.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/log.h"
#include "common/worker_pool.h"
#include "transports/nbd.h"

namespace vix {

namespace {

using ConnPtr = std::shared_ptr<nbd::Connection>;

// Pieces smaller than this go to one connection: splitting them costs more than it gains.
constexpr uint64_t kMinPiece = 256 * 1024;
// A request whose re-established connection breaks this many times fails at once.
constexpr int kMaxFreshFailures = 3;
// One BLOCK_STATUS request covers at most this much (its length field is 32 bits).
constexpr uint64_t kMaxStatusSpan = 1ull << 30;

// *unreachable (when given) is set when the TCP connect itself failed, not the handshake.
Result<ConnPtr> connect_one(const NbdSettings& s, nbd::Deadline deadline,
                            bool* unreachable = nullptr) {
  nbd::Deadline connect_deadline = deadline;
  if (s.guessed_endpoint && s.guessed_connect_ms > 0) {
    connect_deadline = std::min(deadline, nbd::deadline_after_ms(s.guessed_connect_ms));
  }
  auto connected = nbd::connect_stream(s.endpoint, connect_deadline);
  if (!connected.ok()) {
    if (unreachable) *unreachable = true;
    return std::move(connected).error();
  }
  auto stream = std::move(connected).value();
  nbd::HandshakeOptions h;
  h.export_name = s.export_name;
  h.want_allocation = true;
  h.deadline = deadline;
  if (s.tls) {
    nbd::TlsOptions tls = s.tls_options;
    h.start_tls = [tls, deadline](std::unique_ptr<nbd::Stream> plain) {
      return nbd::start_tls(std::move(plain), tls, deadline);
    };
  }
  VIX_ASSIGN_OR_RETURN(auto conn, nbd::Connection::handshake(std::move(stream), h));
  conn->set_max_request(s.max_request);
  return ConnPtr(std::move(conn));
}

nbd::Deadline earlier(nbd::Deadline a, nbd::Deadline b) {
  return std::min(a, b);
}

class NbdDevice final : public BlockDevice {
 public:
  NbdDevice(NbdSettings s, std::vector<ConnPtr> pool)
      : s_(std::move(s)), info_(pool.front()->info()), slots_(pool.size()) {
    for (size_t i = 0; i < pool.size(); ++i) slots_[i].conn = std::move(pool[i]);
    if (slots_.size() > 1) {
      workers_ = std::make_unique<WorkerPool>(slots_.size() - 1);
      (void)workers_->start_all();  // a thread that cannot start leaves its pieces to the others
    }
  }
  ~NbdDevice() override {
    workers_.reset();  // before the connections: no job may outlive them
  }

  uint64_t capacity_sectors() const override { return info_.size / kSectorSize; }
  bool read_only() const override { return s_.read_only || info_.read_only(); }
  LinkCounters link_counters() const override {
    return {{"reconnects", reconnects_.load(std::memory_order_relaxed)}};
  }
  std::string_view transport_name() const override { return s_.tls ? "nbdssl" : "nbd"; }

  DiskInfo info() const override {
    DiskInfo d;
    d.capacity_sectors = capacity_sectors();
    // An export has no geometry; the usual 255/63 translation, as VMware reports for large disks.
    Geometry g;
    g.heads = 255;
    g.sectors = 63;
    g.cylinders =
        static_cast<uint32_t>(std::clamp<uint64_t>(d.capacity_sectors / (255 * 63), 1, UINT32_MAX));
    d.bios_geometry = g;
    d.phys_geometry = g;
    d.create_type = "nbd";
    return d;
  }

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override {
    VIX_TRY(check_range(sector, count));
    const uint64_t off = sector * kSectorSize, end = off + count * kSectorSize;
    const uint64_t mb = info_.min_block;
    if (mb <= kSectorSize || count == 0) return read_direct(off, end - off, buf);
    // The server wants requests aligned to its minimum block: the partial blocks at either end
    // go through a bounce buffer, the aligned middle straight into the caller's buffer.
    const uint64_t a_start = (off + mb - 1) / mb * mb;
    const uint64_t a_end = end == info_.size ? end : end / mb * mb;
    if (a_start >= a_end) return read_bounced(off, end, buf);
    if (off < a_start) VIX_TRY(read_bounced(off, a_start, buf));
    VIX_TRY(read_direct(a_start, a_end - a_start, buf + (a_start - off)));
    if (a_end < end) VIX_TRY(read_bounced(a_end, end, buf + (a_end - off)));
    return ok();
  }

  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override {
    if (read_only()) {
      return fail(VIX_E_FILE_READ_ONLY, where() + ": the disk is open read-only" +
                                            (info_.read_only() ? " (read-only export)" : ""));
    }
    VIX_TRY(check_range(sector, count));
    // A disk opened UNBUFFERED is write-through: each write carries FUA (or, on a server
    // without it, is followed by a FLUSH of its connection), so it is durable on return.
    // Otherwise durability is Flush's job.
    return spread(sector * kSectorSize, count * kSectorSize, "write",
                  [&](nbd::Connection& c, uint64_t off, uint64_t len) {
                    return c.write(off, len, buf + (off - sector * kSectorSize), s_.fua,
                                   s_.write_timeout_ms);
                  });
  }

  // Discard that reads back as zeros: NBD_CMD_WRITE_ZEROES without NO_HOLE, which lets the
  // server punch a hole. A server with TRIM alone is not used: TRIM may leave the old bytes
  // readable, and a punched range must read as zeros.
  Result<void> unmap(uint64_t sector, uint64_t count) override {
    if (read_only()) {
      return fail(VIX_E_FILE_READ_ONLY, where() + ": cannot discard, the disk is open read-only" +
                                            (info_.read_only() ? " (read-only export)" : ""));
    }
    VIX_TRY(check_range(sector, count));
    if (!info_.can_write_zeroes()) {
      return fail(VIX_E_NOT_SUPPORTED,
                  where() + ": the server cannot discard to zeros (no NBD_CMD_WRITE_ZEROES" +
                      (info_.can_trim() ? "; its TRIM may leave the old bytes readable)" : ")"));
    }
    if (count == 0) return ok();
    const uint64_t off = sector * kSectorSize, end = off + count * kSectorSize;
    const uint64_t mb = std::max<uint64_t>(info_.min_block, kSectorSize);
    // The middle, in whole minimum blocks, is zeroed (and perhaps deallocated) by the server;
    // the partial blocks at either end are written as zero sectors, as write() would.
    const uint64_t a_start = (off + mb - 1) / mb * mb;
    const uint64_t a_end = end == info_.size ? end : end / mb * mb;
    if (a_start >= a_end) return write_zero_sectors(off, end);
    if (off < a_start) VIX_TRY(write_zero_sectors(off, a_start));
    VIX_TRY(spread(a_start, a_end - a_start, "write zeroes",
                   [&](nbd::Connection& c, uint64_t o, uint64_t l) {
                     return c.write_zeroes(o, l, true, s_.write_timeout_ms);
                   }));
    if (a_end < end) VIX_TRY(write_zero_sectors(a_end, end));
    // WRITE_ZEROES carries no FUA here: a write-through disk flushes instead.
    if (s_.fua) VIX_TRY(flush());
    return ok();
  }

  Result<void> flush() override {
    if (read_only() || !info_.can_flush()) return ok();
    // Every connection: a write acknowledged on one is only known durable after its own FLUSH
    // unless the server promises multi-conn consistency, and the cost is one round trip each.
    for (size_t i = 0; i < slots_.size(); ++i) {
      VIX_TRY(with_retry(i, "flush", 0, 0,
                         [&](nbd::Connection& c) { return c.flush(s_.write_timeout_ms); }));
    }
    return ok();
  }

  Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override {
    VIX_TRY(check_range(sector, count));
    std::vector<SectorExtent> out;
    if (count == 0) return out;
    if (!info_.base_allocation) {
      out.push_back({sector, count});  // no map from the server: everything may hold data
      return out;
    }
    const uint64_t end = (sector + count) * kSectorSize;
    uint64_t cursor = sector * kSectorSize;
    const size_t slot = next_slot();
    while (cursor < end) {
      const uint64_t span = std::min(end - cursor, kMaxStatusSpan);
      std::vector<nbd::StatusExtent> extents;
      VIX_TRY(
          with_retry(slot, "block status", cursor, span, [&](nbd::Connection& c) -> Result<void> {
            VIX_ASSIGN_OR_RETURN(extents, c.block_status(cursor, span, s_.read_timeout_ms));
            return ok();
          }));
      if (extents.empty()) {
        return fail(VIX_E_HOST_TCP_CONN_LOST, where() + ": block status at offset " +
                                                  std::to_string(cursor) + " answered no extent");
      }
      for (const nbd::StatusExtent& e : extents) {
        if (e.offset != cursor || e.length == 0) {
          return fail(VIX_E_HOST_TCP_CONN_LOST,
                      where() + ": block status extent at " + std::to_string(e.offset) + "+" +
                          std::to_string(e.length) + " does not continue from offset " +
                          std::to_string(cursor));
        }
        const uint64_t e_end = std::min(end, e.offset + std::min(e.length, end - e.offset));
        if (!(e.flags & 1u)) {  // NBD_STATE_HOLE clear: the server stores data there
          const uint64_t first = e.offset / kSectorSize;
          const uint64_t last = (e_end + kSectorSize - 1) / kSectorSize;
          if (!out.empty() && out.back().start + out.back().count >= first) {
            out.back().count =
                std::max(out.back().start + out.back().count, last) - out.back().start;
          } else {
            out.push_back({first, last - first});
          }
        }
        cursor = e_end;
        if (cursor >= end) break;
      }
    }
    return out;
  }

 private:
  struct Slot {
    ConnPtr conn;                   // guarded by NbdDevice::mu_
    std::timed_mutex reconnect_mu;  // one reconnect per slot at a time
  };

  std::string where() const {
    return std::string(transport_name()) + ": " + s_.endpoint.display() + " export \"" +
           s_.export_name + "\"";
  }

  Result<void> check_range(uint64_t sector, uint64_t count) const {
    const uint64_t cap = capacity_sectors();
    if (sector > cap || count > cap - sector) {
      return fail(VIX_E_DISK_OUTOFRANGE, where() + ": sectors " + std::to_string(sector) + "+" +
                                             std::to_string(count) + " past the capacity of " +
                                             std::to_string(cap) + " sectors");
    }
    return ok();
  }

  Result<void> read_direct(uint64_t off, uint64_t len, uint8_t* buf) {
    return spread(off, len, "read", [&](nbd::Connection& c, uint64_t o, uint64_t l) {
      return c.read(o, l, buf + (o - off), s_.read_timeout_ms);
    });
  }

  // [off, end) is sector-aligned and spans at most two minimum blocks (at most 128 KiB).
  Result<void> write_zero_sectors(uint64_t off, uint64_t end) {
    const std::vector<uint8_t> zeros(end - off, 0);
    return write(off / kSectorSize, (end - off) / kSectorSize, zeros.data());
  }

  // [off, end) spans at most two of the server's minimum blocks (at most 64 KiB each).
  Result<void> read_bounced(uint64_t off, uint64_t end, uint8_t* buf) {
    const uint64_t mb = info_.min_block;
    const uint64_t b_start = off / mb * mb;
    const uint64_t b_end = std::min<uint64_t>((end + mb - 1) / mb * mb, info_.size);
    std::vector<uint8_t> bounce(b_end - b_start);
    VIX_TRY(read_direct(b_start, bounce.size(), bounce.data()));
    std::copy(bounce.begin() + (off - b_start), bounce.begin() + (end - b_start), buf);
    return ok();
  }

  size_t next_slot() { return rr_.fetch_add(1, std::memory_order_relaxed) % slots_.size(); }

  ConnPtr get(size_t slot) {
    std::lock_guard lock(mu_);
    return slots_[slot].conn;
  }

  // Cuts [off, off+len) into contiguous pieces, one per connection, and runs them at once. Only
  // a lone request is cut: when others are in flight (the read-ahead cache's prefetches), they
  // already keep every connection busy, and cutting would queue their pieces behind the few
  // worker threads: 4 connections then read at half the speed of one over a 2 ms link.
  Result<void> spread(uint64_t off, uint64_t len, const char* what,
                      const std::function<Result<void>(nbd::Connection&, uint64_t, uint64_t)>& op) {
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

  // Runs op on the slot's connection; a broken connection is re-established (back-off, within
  // request_timeout_ms) and op sent again on the new one.
  Result<void> with_retry(size_t slot, const char* what, uint64_t off, uint64_t len,
                          const std::function<Result<void>(nbd::Connection&)>& op) {
    ConnPtr conn = get(slot);
    bool lost = false;
    int fresh_failures = 0;
    nbd::Deadline budget = nbd::kNoDeadline;
    int64_t backoff = s_.backoff_start_ms;
    Error last;
    const auto started = nbd::Clock::now();
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
        budget = nbd::deadline_after_ms(s_.request_timeout_ms);
        log::warn(where() + ": " + what + " at offset " + std::to_string(off) + " (" +
                  std::to_string(len) + " bytes) failed: " + last.message + "; reconnecting");
      }
      // Another request on this slot may be reconnecting it: wait for that, within our budget.
      std::unique_lock<std::timed_mutex> rlock(slots_[slot].reconnect_mu, std::defer_lock);
      if (budget == nbd::kNoDeadline) {
        rlock.lock();  // RequestTimeoutMs = 0: no limit
      } else if (!rlock.try_lock_until(budget)) {
        return lost_error(what, off, len, started, last);
      }
      ConnPtr current = get(slot);
      if (current && current != conn && !current->broken()) {
        conn = std::move(current);
        continue;
      }
      const auto now = nbd::Clock::now();
      if (now >= budget) return lost_error(what, off, len, started, last);
      const auto pause = std::chrono::milliseconds(backoff);
      std::this_thread::sleep_for(budget - now < pause ? budget - now : pause);
      backoff = std::min(backoff * 2, s_.backoff_cap_ms);
      const nbd::Deadline hs = earlier(budget, nbd::deadline_after_ms(s_.accept_timeout_ms));
      auto fresh = connect_one(s_, hs);
      if (!fresh.ok()) {
        last = std::move(fresh).error();
        conn = nullptr;
        continue;
      }
      ConnPtr c = std::move(fresh).value();
      if (c->info().size != info_.size) {
        // Never read from what may be another disk.
        return fail(VIX_E_HOST_TCP_CONN_LOST,
                    where() + ": after reconnecting, the export's size is " +
                        std::to_string(c->info().size) + " bytes instead of " +
                        std::to_string(info_.size));
      }
      {
        std::lock_guard lock(mu_);
        slots_[slot].conn = c;
      }
      reconnects_.fetch_add(1, std::memory_order_relaxed);
      log::info(where() + ": reconnected to " + c->peer() + " after " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   nbd::Clock::now() - started)
                                   .count()) +
                " ms");
      conn = std::move(c);
    }
  }

  Error lost_error(const char* what, uint64_t off, uint64_t len, nbd::Clock::time_point started,
                   const Error& last, int broke_again = 0) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(nbd::Clock::now() - started).count();
    const std::string why =
        broke_again > 0
            ? "the connection broke again after each of " + std::to_string(broke_again) +
                  " reconnects (" + std::to_string(ms) + " ms)"
            : "connection lost, not re-established within " + std::to_string(ms) +
                  " ms (vixDiskLib.nfc.RequestTimeoutMs = " +
                  std::to_string(s_.request_timeout_ms) + ")";
    Error e = fail(VIX_E_HOST_TCP_CONN_LOST, where() + ": " + what + " at offset " +
                                                 std::to_string(off) + " (" + std::to_string(len) +
                                                 " bytes): " + why + ": " + last.message);
    log::warn(e.message);
    return e;
  }

  const NbdSettings s_;
  const nbd::ExportInfo info_;  // of the first connection; every later one must match its size
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

// ESXi hosts (found through the inventory) whose NBD port did not answer lately: the chain's
// next mode, and the next disk, do not wait for them again. Process-wide, keyed by endpoint.
class Unreachable {
 public:
  static constexpr auto kForget = std::chrono::seconds(60);
  std::optional<std::string> recent(const std::string& endpoint) {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(endpoint);
    if (it == hosts_.end()) return std::nullopt;
    if (nbd::Clock::now() - it->second.when > kForget) {
      hosts_.erase(it);
      return std::nullopt;
    }
    return it->second.why;
  }
  void note(const std::string& endpoint, const std::string& why) {
    std::lock_guard lock(mu_);
    if (hosts_.size() > 1024) hosts_.clear();  // bounded, whatever the inventory holds
    hosts_[endpoint] = {nbd::Clock::now(), why};
  }

 private:
  struct Entry {
    nbd::Clock::time_point when;
    std::string why;
  };
  std::mutex mu_;
  std::map<std::string, Entry> hosts_;
};

Unreachable& unreachable_hosts() {
  static Unreachable* hosts = new Unreachable();  // never destroyed: used until exit
  return *hosts;
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_nbd_device(const NbdSettings& s) {
  const std::string mode = s.tls ? "nbdssl" : "nbd";
  const std::string where =
      mode + ": " + s.endpoint.display() + " export \"" + s.export_name + "\"";
  if (s.guessed_endpoint) {
    if (auto why = unreachable_hosts().recent(s.endpoint.display())) {
      return fail(VIX_E_NOT_SUPPORTED, mode + ": not reachable: " + s.endpoint.display() +
                                           " did not answer in the last minute (" + *why +
                                           "; set vixfs.nbd.server)");
    }
  }
  bool unreachable = false;
  auto first = connect_one(s, nbd::deadline_after_ms(s.accept_timeout_ms), &unreachable);
  if (!first.ok()) {
    Error e = std::move(first).error();
    if (s.guessed_endpoint && unreachable) {
      unreachable_hosts().note(s.endpoint.display(), e.message);
      e.code = VIX_E_NOT_SUPPORTED;
      e.message = mode + ": not reachable: " + e.message + " (set vixfs.nbd.server)";
      return e;
    }
    // The client's messages usually name the endpoint already; say it once.
    const bool named = e.message.find(s.endpoint.display()) != std::string::npos;
    e.message = (named ? mode : where) + ": " + e.message;
    return e;
  }
  const nbd::ExportInfo info = (*first)->info();
  if (info.size % kSectorSize != 0) {
    return fail(VIX_E_NOT_SUPPORTED, where + ": the export's size " + std::to_string(info.size) +
                                         " is not a multiple of 512 bytes");
  }
  if (info.min_block > 65536 || (info.min_block & (info.min_block - 1)) != 0) {
    return fail(VIX_E_NOT_SUPPORTED, where + ": the server's minimum block size " +
                                         std::to_string(info.min_block) +
                                         " is not a power of two up to 64 KiB");
  }
  if (info.size < s.min_capacity_bytes) {
    return fail(VIX_E_DISK_CAPACITY_MISMATCH,
                where + ": the export is smaller than the disk: " + std::to_string(info.size) +
                    " bytes served, the inventory says the disk holds " +
                    std::to_string(s.min_capacity_bytes));
  }
  std::vector<ConnPtr> pool{std::move(first).value()};
  const unsigned want = info.can_multi_conn() ? std::max(1u, s.connections) : 1u;
  if (want > 1) {
    // A server that accepts fewer clients (qemu-nbd --shared) leaves the extra ones hanging in
    // its backlog: give them a short handshake, in parallel, and go on with what answered.
    const nbd::Deadline extra =
        earlier(nbd::deadline_after_ms(s.accept_timeout_ms), nbd::deadline_after_ms(3000));
    std::vector<Result<ConnPtr>> extras(want - 1, Result<ConnPtr>(fail(VIX_E_FAIL, "")));
    std::vector<std::thread> threads;
    for (unsigned i = 0; i + 1 < want; ++i) {
      threads.emplace_back([&, i] { extras[i] = connect_one(s, extra); });
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
  log::info(where + ": opened, " + std::to_string(info.size) + " bytes, " +
            std::to_string(pool.size()) + " connection(s)" +
            (info.read_only() ? ", read-only" : "") +
            (s.fua && !s.read_only && !info.read_only()
                 ? (info.can_fua() ? ", write-through (FUA)" : ", write-through (FLUSH per write)")
                 : "") +
            (info.base_allocation ? ", base:allocation" : ""));
  return std::unique_ptr<BlockDevice>(new NbdDevice(s, std::move(pool)));
}

}  // namespace vix
