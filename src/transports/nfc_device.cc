// The BlockDevice of an NFC-opened disk: several connections (vixfs.nfc.connections), each with
// its own ticket; a request is cut at the request size, its pieces put in flight on the
// connections at once and placed where they belong. A piece whose connection broke waits with
// back-off, reconnects with a fresh ticket and is sent again, all within
// vixDiskLib.nfc.RequestTimeoutMs; a host that cannot allocate a request's buffer ("NFC error 5")
// gets smaller requests; an answer of the host's own (an error with text, a protocol violation)
// is returned as it is.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/log.h"
#include "nfc/authd.h"
#include "nfc/session.h"
#include "transports/nfc.h"
#include "vmdk/descriptor.h"

namespace vix {

namespace {

using nfc::Session;
using SessionPtr = std::shared_ptr<Session>;
using net::Clock;

constexpr uint32_t kMinRequest = 64 * 1024;
// A host that has not accepted the TCP connection by then is taken as unreachable.
constexpr int64_t kConnectMs = 10000;
constexpr uint64_t kAllocationChunk = 64 * 1024;           // QueryAllocatedBlocks granularity
constexpr uint64_t kAllocationWindow = uint64_t(1) << 20;  // chunks per query (64 GiB)

bool is_lost(VixError code) {
  return code == VIX_E_HOST_TCP_CONN_LOST || code == VIX_E_HOST_TCP_SOCKET_ERROR ||
         code == VIX_E_HOST_NETWORK_CONN_REFUSED || code == VIX_E_HOST_CONNECTION_LOST;
}

// ESXi hosts whose NFC port did not accept a connection lately (a firewall that drops port 902
// is common between a backup proxy and its hosts): the chain's next mode, and the next disk, do
// not wait for them again. Process-wide, keyed by host:port. Only opens consult it: a disk
// already open keeps retrying its host within its request budget.
class Unreachable {
 public:
  static constexpr auto kForget = std::chrono::seconds(60);
  std::optional<std::string> recent(const std::string& endpoint) {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(endpoint);
    if (it == hosts_.end()) return std::nullopt;
    if (net::Clock::now() - it->second.when > kForget) {
      hosts_.erase(it);
      return std::nullopt;
    }
    return it->second.why;
  }
  void note(const std::string& endpoint, const std::string& why) {
    std::lock_guard lock(mu_);
    if (hosts_.size() > 1024) hosts_.clear();  // bounded, whatever the inventory holds
    hosts_[endpoint] = {net::Clock::now(), why};
  }

 private:
  struct Entry {
    net::Clock::time_point when;
    std::string why;
  };
  std::mutex mu_;
  std::map<std::string, Entry> hosts_;
};

Unreachable& unreachable_hosts() {
  static Unreachable* hosts = new Unreachable();  // never destroyed: used until exit
  return *hosts;
}

class NfcDevice final : public BlockDevice {
 public:
  explicit NfcDevice(NfcSettings s)
      : s_(std::move(s)),
        where_("NFC " + s_.path),
        slots_(s_.connections),
        max_request_(s_.max_request) {}
  // Opens the first connection, so that an open fails with its reason.
  Result<void> init();

  ~NfcDevice() override {
    for (Slot& slot : slots_) {
      SessionPtr session = slot.session;
      if (session && !session->broken()) {
        auto r = session->close(net::deadline_after_ms(5000));
        if (!r.ok()) log::debug(where_ + ": close: " + r.error().message);
      }
    }
  }

  uint64_t capacity_sectors() const override { return capacity_ / kSectorSize; }
  DiskInfo info() const override {
    DiskInfo i;
    vmdk::fill_info_from_ddb(
        [this](const std::string& key) {
          auto it = ddb_.find(key);
          return it == ddb_.end() ? std::string() : it->second;
        },
        &i);
    i.capacity_sectors = capacity_sectors();
    return i;
  }
  // The disk database keys GetInfo needs, as the host answered them at open.
  Result<std::map<std::string, std::string>> metadata() override { return ddb_; }
  bool read_only() const override { return s_.read_only; }
  std::string_view transport_name() const override { return s_.tls ? "nbdssl" : "nbd"; }

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override {
    VIX_TRY(check_range(sector, count));
    return transfer(sector * kSectorSize, count * kSectorSize, buf, false);
  }
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override {
    if (s_.read_only) {
      return fail(VIX_E_FILE_READ_ONLY, where_ + ": opened read-only (a read-only NFC ticket)");
    }
    VIX_TRY(check_range(sector, count));
    return transfer(sector * kSectorSize, count * kSectorSize, const_cast<uint8_t*>(buf), true);
  }
  // Every write is acknowledged by the host once it is written; nothing is held back here.
  Result<void> flush() override { return ok(); }

  Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override;

  std::string protocol() const override { return "nfc"; }
  LinkCounters link_counters() const override {
    return {{"reconnects", reconnects_.load()}, {"allocationRetries", allocation_retries_.load()}};
  }

 private:
  struct Slot {
    SessionPtr session;  // under NfcDevice::mu_
    std::mutex reconnect_mu;
  };
  struct Piece {
    uint64_t offset = 0;
    uint32_t len = 0;
    size_t slot = 0;
    SessionPtr session;
    Session::OpId id = 0;
    bool started = false;
    Result<void> result;
  };

  Result<void> check_range(uint64_t sector, uint64_t count) const {
    if (sector > capacity_sectors() || count > capacity_sectors() - sector) {
      return fail(VIX_E_DISK_OUTOFRANGE, where_ + ": sectors " + std::to_string(sector) + "+" +
                                             std::to_string(count) + " past the end (" +
                                             std::to_string(capacity_sectors()) + ")");
    }
    return ok();
  }

  int64_t op_timeout(bool write) const { return write ? s_.write_timeout_ms : s_.read_timeout_ms; }

  SessionPtr current(size_t slot) {
    std::lock_guard lock(mu_);
    return slots_[slot].session;
  }

  // The slot's session, reconnected (fresh ticket) when missing or broken.
  Result<SessionPtr> session(size_t slot, net::Deadline deadline);
  // first_open: the host is skipped when it did not answer lately, and noted when it does not.
  Result<SessionPtr> connect(net::Deadline deadline, bool first_open = false);

  Result<void> start(Piece& p, uint8_t* base, bool write) {
    VIX_ASSIGN_OR_RETURN(p.session, session(p.slot, net::deadline_after_ms(s_.accept_timeout_ms)));
    const net::Deadline d = net::deadline_after_ms(op_timeout(write));
    auto id = write ? p.session->start_write(p.offset, p.len, base, d)
                    : p.session->start_read(p.offset, p.len, base, s_.compression, d);
    if (!id.ok()) return id.error();
    p.id = *id;
    p.started = true;
    return ok();
  }

  Result<void> transfer(uint64_t offset, uint64_t len, uint8_t* buf, bool write);
  // One piece alone, sent again after a lost connection, split on allocation errors.
  Result<void> retry_piece(uint64_t offset, uint64_t len, uint8_t* buf, bool write,
                           Clock::time_point started, Error last);

  const NfcSettings s_;
  uint64_t capacity_ = 0;
  std::map<std::string, std::string> ddb_;  // set at init
  std::string where_;
  std::mutex mu_;
  std::vector<Slot> slots_;
  std::atomic<size_t> rr_{0};
  std::atomic<uint32_t> max_request_;
  std::atomic<uint64_t> reconnects_{0}, allocation_retries_{0};

  std::mutex allocation_mu_;
  std::map<uint64_t, std::vector<uint8_t>> allocation_;  // window index -> bitmap
  bool allocation_unsupported_ = false;                  // under allocation_mu_
};

Result<SessionPtr> NfcDevice::connect(net::Deadline deadline, bool first_open) {
  VIX_ASSIGN_OR_RETURN(vsphere::NfcTicket ticket, s_.acquire_ticket());
  nfc::AuthdOptions a;
  a.host = ticket.host.empty() ? s_.default_host : ticket.host;
  a.port = s_.port_override != 0 ? s_.port_override : ticket.port;
  a.session_id = ticket.session_id;
  a.service = ticket.service.empty() ? "vpxa-nfc" : ticket.service;
  a.data_tls = s_.tls;
  if (!ticket.ssl_thumbprint.empty()) {
    a.thumbprints = {ticket.ssl_thumbprint};
  } else {
    a.thumbprints = s_.host_thumbprints;
  }
  a.ca_file = s_.ca_file;
  a.deadline = deadline;
  a.connect_deadline = std::min(deadline, net::deadline_after_ms(kConnectMs));
  const std::string endpoint = a.host + ":" + std::to_string(a.port);
  if (first_open) {
    if (auto why = unreachable_hosts().recent(endpoint)) {
      return fail(VIX_E_NOT_SUPPORTED, "not reachable: " + endpoint +
                                           " did not answer in the last minute (" + *why + ")");
    }
  }
  bool unreachable = false;
  auto stream = nfc::authd_connect(a, &unreachable);
  if (!stream.ok()) {
    Error e = std::move(stream).error();
    if (first_open && unreachable) {
      unreachable_hosts().note(endpoint, e.message);
      e = fail(VIX_E_NOT_SUPPORTED, "not reachable: " + e.message);
    }
    return e;
  }
  nfc::SessionOptions o;
  o.path = s_.path;
  o.read_only = s_.read_only;
  o.buffer_size = s_.buffer_size;
  o.where = "NFC " + a.host + ":" + std::to_string(a.port);
  o.deadline = deadline;
  VIX_ASSIGN_OR_RETURN(auto session, Session::open(std::move(*stream), o));
  return SessionPtr(std::move(session));
}

Result<SessionPtr> NfcDevice::session(size_t slot, net::Deadline deadline) {
  SessionPtr s = current(slot);
  if (s && !s->broken()) return s;
  std::lock_guard reconnect(slots_[slot].reconnect_mu);
  s = current(slot);
  if (s && !s->broken()) return s;  // another request reconnected it meanwhile
  VIX_ASSIGN_OR_RETURN(SessionPtr fresh, connect(deadline));
  if (fresh->capacity_bytes() != 0 && fresh->capacity_bytes() != capacity_) {
    return fail(VIX_E_DISK_CAPACITY_MISMATCH, where_ + ": reconnected, the disk now has " +
                                                  std::to_string(fresh->capacity_bytes()) +
                                                  " bytes, not " + std::to_string(capacity_));
  }
  {
    std::lock_guard lock(mu_);
    slots_[slot].session = fresh;
  }
  if (s) {
    reconnects_.fetch_add(1);
    log::info(where_ + ": NFC connection " + std::to_string(slot) + " re-established");
  }
  return fresh;
}

Result<void> NfcDevice::transfer(uint64_t offset, uint64_t len, uint8_t* buf, bool write) {
  if (len == 0) return ok();
  const auto started = Clock::now();
  const uint32_t step = max_request_.load();
  std::vector<Piece> pieces;
  pieces.reserve(size_t((len + step - 1) / step));
  for (uint64_t done = 0; done < len; done += step) {
    Piece p;
    p.offset = offset + done;
    p.len = uint32_t(std::min<uint64_t>(step, len - done));
    p.slot = rr_.fetch_add(1, std::memory_order_relaxed) % slots_.size();
    pieces.push_back(std::move(p));
  }
  for (Piece& p : pieces) p.result = start(p, buf + (p.offset - offset), write);
  for (Piece& p : pieces) {
    if (p.started) p.result = p.session->wait(p.id, net::deadline_after_ms(op_timeout(write)));
  }
  for (Piece& p : pieces) {
    if (p.result.ok()) continue;
    VIX_TRY(retry_piece(p.offset, p.len, buf + (p.offset - offset), write, started,
                        std::move(p.result).error()));
  }
  return ok();
}

Result<void> NfcDevice::retry_piece(uint64_t offset, uint64_t len, uint8_t* buf, bool write,
                                    Clock::time_point started, Error last) {
  const char* what = write ? "write" : "read";
  int64_t backoff = s_.backoff_start_ms;
  int attempts = 0;
  uint64_t done = 0;  // what is done stays done: a retry goes on from the part that failed
  for (;;) {
    const bool allocation = last.code == VIX_E_OUT_OF_MEMORY;
    if (!allocation && !is_lost(last.code)) return last;  // the host's own answer
    const auto spent =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    if (s_.request_timeout_ms != 0 && spent >= s_.request_timeout_ms) {
      return fail(last.code, where_ + ": " + what + " at " + std::to_string(offset) + "+" +
                                 std::to_string(len) + " failed after " + std::to_string(spent) +
                                 " ms and " + std::to_string(attempts) +
                                 " retries (vixDiskLib.nfc.RequestTimeoutMs " +
                                 std::to_string(s_.request_timeout_ms) + "): " + last.message);
    }
    if (allocation) {
      // The host could not allocate the buffer: halve this disk's requests from now on.
      uint32_t cur = max_request_.load();
      const uint32_t smaller = std::max(kMinRequest, cur / 2);
      max_request_.compare_exchange_strong(cur, smaller);
      allocation_retries_.fetch_add(1);
      log::warn(where_ + ": the host could not allocate a request (" + last.message +
                "); retrying with requests of " + std::to_string(smaller) + " bytes");
    } else {
      log::info(where_ + ": " + what + " at " + std::to_string(offset) +
                " lost its connection, retrying: " + last.message);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff = std::min(backoff * 2, s_.backoff_cap_ms);
    attempts++;

    const size_t slot = rr_.fetch_add(1, std::memory_order_relaxed) % slots_.size();
    Result<void> r = ok();
    while (done < len) {
      const uint32_t n = uint32_t(std::min<uint64_t>(max_request_.load(), len - done));
      auto s = session(slot, net::deadline_after_ms(s_.accept_timeout_ms));
      if (!s.ok()) {
        r = s.error();
        break;
      }
      const net::Deadline d = net::deadline_after_ms(op_timeout(write));
      auto id = write ? (*s)->start_write(offset + done, n, buf + done, d)
                      : (*s)->start_read(offset + done, n, buf + done, s_.compression, d);
      r = id.ok() ? (*s)->wait(*id, d) : Result<void>(id.error());
      if (!r.ok()) break;
      done += n;
    }
    if (r.ok()) return ok();
    last = std::move(r).error();
  }
}

Result<std::vector<SectorExtent>> NfcDevice::allocated(uint64_t sector, uint64_t count) {
  VIX_TRY(check_range(sector, count));
  std::vector<SectorExtent> out;
  if (count == 0) return out;
  const uint64_t chunk_sectors = kAllocationChunk / kSectorSize;
  const uint64_t total_chunks = (capacity_ + kAllocationChunk - 1) / kAllocationChunk;
  std::lock_guard lock(allocation_mu_);
  if (allocation_unsupported_) return std::vector<SectorExtent>{{sector, count}};
  const uint64_t first = sector / chunk_sectors, last = (sector + count - 1) / chunk_sectors;
  auto add = [&](uint64_t c) {
    uint64_t start = std::max(c * chunk_sectors, sector);
    uint64_t end = std::min((c + 1) * chunk_sectors, sector + count);
    if (!out.empty() && out.back().start + out.back().count == start) {
      out.back().count += end - start;
    } else {
      out.push_back({start, end - start});
    }
  };
  for (uint64_t c = first; c <= last;) {
    const uint64_t window = c / kAllocationWindow;
    auto it = allocation_.find(window);
    if (it == allocation_.end()) {
      const uint64_t w_start = window * kAllocationWindow;
      const uint64_t w_count = std::min(kAllocationWindow, total_chunks - w_start);
      auto s = session(0, net::deadline_after_ms(s_.accept_timeout_ms));
      if (!s.ok()) return s.error();
      auto bits = (*s)->query_allocated(w_start * kAllocationChunk, kAllocationChunk, w_count,
                                        net::deadline_after_ms(s_.read_timeout_ms));
      if (!bits.ok()) {
        if (bits.error().code != VIX_E_FILE_ERROR) return bits.error();
        // The host answered that it cannot: every sector counts as data from now on.
        log::info(where_ + ": QueryAllocatedBlocks not answered (" + bits.error().message +
                  "): the whole disk counts as allocated");
        allocation_unsupported_ = true;
        return std::vector<SectorExtent>{{sector, count}};
      }
      it = allocation_.emplace(window, std::move(*bits)).first;
    }
    const uint64_t w_end = (window + 1) * kAllocationWindow;
    for (; c <= last && c < w_end; c++) {
      const uint64_t bit = c - window * kAllocationWindow;
      if (it->second[bit / 8] & (1u << (bit % 8))) add(c);
    }
  }
  return out;
}

Result<void> NfcDevice::init() {
  VIX_ASSIGN_OR_RETURN(SessionPtr first,
                       connect(net::deadline_after_ms(s_.accept_timeout_ms), true));
  capacity_ = first->capacity_bytes();
  where_ = first->where() + " " + s_.path;
  if (capacity_ == 0) capacity_ = s_.inventory_capacity;
  if (capacity_ == 0 || capacity_ % kSectorSize != 0) {
    return fail(VIX_E_DISK_INVAL, where_ + ": the host reports a capacity of " +
                                      std::to_string(capacity_) + " bytes");
  }
  // The capacity's place in the OPEN_FILE reply is less certain than the rest: a disagreement
  // with the inventory is an error rather than a disk of the wrong size.
  if (s_.inventory_capacity != 0 && capacity_ != s_.inventory_capacity) {
    return fail(VIX_E_DISK_CAPACITY_MISMATCH,
                where_ + ": the host reports " + std::to_string(capacity_) +
                    " bytes, the inventory " + std::to_string(s_.inventory_capacity));
  }
  // What GetInfo reports beyond the capacity; a host that does not answer DDB_GET leaves it out.
  for (const char* key : vmdk::kInfoDdbKeys) {
    auto value = first->ddb_get(std::string(key).substr(4), net::deadline_after_ms(5000));
    if (!value.ok()) {
      log::debug(where_ + ": DDB_GET " + key + ": " + value.error().message);
      if (first->broken()) break;
      continue;
    }
    if (!value->empty()) ddb_[key] = std::move(*value);
  }
  std::lock_guard lock(mu_);
  slots_[0].session = std::move(first);
  return ok();
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_nfc_device(NfcSettings s) {
  if (s.connections == 0) s.connections = 1;
  if (s.max_request < kMinRequest) s.max_request = kMinRequest;
  if (!s.acquire_ticket) return fail(VIX_E_INVALID_ARG, "NFC: no way to get a ticket");
  auto device = std::make_unique<NfcDevice>(std::move(s));
  VIX_TRY(device->init());
  return std::unique_ptr<BlockDevice>(std::move(device));
}

}  // namespace vix
