// The sending side of a connection: callers register requests under a cookie and send them
// (writers serialised by write_mu_); the reader thread (reply_reader.cc) fills their buffers. A
// caller never returns while the reader may still touch its buffer: it waits until its request is
// done, and the reader marks every request done before it exits.
#include "nbd/connection.h"

#include <algorithm>
#include <deque>

#include "nbd/connection_impl.h"
#include "nbd/protocol.h"

namespace vix::nbd {

bool ExportInfo::read_only() const {
  return transmission_flags & kFlagReadOnly;
}
bool ExportInfo::can_multi_conn() const {
  return transmission_flags & kFlagCanMultiConn;
}
bool ExportInfo::can_flush() const {
  return transmission_flags & kFlagSendFlush;
}
bool ExportInfo::can_fua() const {
  return transmission_flags & kFlagSendFua;
}
bool ExportInfo::can_trim() const {
  return transmission_flags & kFlagSendTrim;
}
bool ExportInfo::can_write_zeroes() const {
  return transmission_flags & kFlagSendWriteZeroes;
}

namespace {

// Requests one call keeps in flight: enough to hide latency, few enough that a 1 TB trim does
// not queue half a million requests on the server.
constexpr size_t kWindow = 64;
// Block status asks at most this much at once (a multiple of any legal minimum block size).
constexpr uint64_t kMaxStatusRequest = 1ull << 31;
constexpr size_t kHeaderSize = 28;

void header(uint8_t* h, uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset,
            uint32_t length) {
  put_be32(h, kRequestMagic);
  put_be16(h + 4, flags);
  put_be16(h + 6, type);
  put_be64(h + 8, cookie);
  put_be64(h + 16, offset);
  put_be32(h + 24, length);
}

}  // namespace

Connection::Impl::Impl(Negotiated n, const std::string& export_name)
    : stream_(std::move(n.stream)), info_(n.info), meta_id_(n.meta_context_id) {
  peer_ = stream_->peer();
  prefix_ = "nbd " + peer_ + " export '" + printable(export_name) + "': ";
  set_max_request(kDefaultMaxBlock);
}

Connection::Impl::~Impl() {
  if (reader_.joinable() && !broken_.load()) {
    // A polite goodbye; the server sends no reply, so a short deadline is enough.
    uint8_t h[kHeaderSize];
    header(h, kCmdDisc, 0, 0, 0, 0);
    std::lock_guard<std::mutex> w(write_mu_);
    (void)stream_->write_all(h, sizeof h, deadline_after_ms(2000));
  }
  break_connection("connection closed by the client");
  if (reader_.joinable()) reader_.join();
}

void Connection::Impl::start() {
  reader_ = std::thread([this] { reader_loop(); });
}

void Connection::Impl::set_max_request(uint32_t bytes) {
  uint32_t cap = std::min(info_.max_block, kDefaultMaxBlock);
  uint32_t v = std::clamp(bytes, info_.min_block, std::max(cap, info_.min_block));
  max_request_.store(v - v % info_.min_block);
}

Result<void> Connection::Impl::check_range(const char* what, uint64_t offset,
                                           uint64_t length) const {
  std::string where =
      prefix_ + what + " at offset " + std::to_string(offset) + " length " + std::to_string(length);
  if (offset > info_.size || length > info_.size - offset) {
    return fail(VIX_E_DISK_OUTOFRANGE, where + " is past the end of the export (" +
                                           std::to_string(info_.size) + " bytes)");
  }
  uint32_t mb = info_.min_block;
  bool ends_at_size = offset + length == info_.size;
  if (offset % mb != 0 || (length % mb != 0 && !ends_at_size)) {
    return fail(VIX_E_INVALID_ARG,
                where + " is not aligned to the server's minimum block size " + std::to_string(mb));
  }
  return ok();
}

Result<void> Connection::Impl::run(uint16_t type, uint16_t flags, uint64_t offset, uint64_t length,
                                   uint8_t* read_buf, const uint8_t* write_buf,
                                   int64_t timeout_ms) {
  uint64_t piece = max_request_.load();
  std::deque<std::shared_ptr<Request>> inflight;
  uint64_t next = 0;
  Result<void> first = ok();
  while (next < length || !inflight.empty()) {
    if (next < length && inflight.size() < kWindow) {
      std::vector<std::shared_ptr<Request>> batch;
      while (next < length && inflight.size() + batch.size() < kWindow) {
        auto r = std::make_shared<Request>();
        r->type = type;
        r->flags = flags;
        r->offset = offset + next;
        r->length = uint32_t(std::min<uint64_t>(piece, length - next));
        if (read_buf) r->read_buf = read_buf + next;
        if (write_buf) r->write_buf = write_buf + next;
        next += r->length;
        batch.push_back(std::move(r));
      }
      auto sent = submit(batch, timeout_ms);
      for (auto& r : batch) {
        if (r->cookie) inflight.push_back(std::move(r));
      }
      if (!sent.ok()) {
        first = std::move(sent);
        next = length;  // send nothing more, collect what is in flight
      }
      continue;
    }
    auto r = wait(*inflight.front(), timeout_ms);
    inflight.pop_front();
    if (!r.ok() && first.ok()) {
      first = std::move(r);
      next = length;
    }
  }
  return first;
}

Result<void> Connection::Impl::run_one(const std::shared_ptr<Request>& r, int64_t timeout_ms) {
  auto sent = submit({r}, timeout_ms);
  if (r->cookie == 0) return sent;  // never registered: nothing to wait for
  auto got = wait(*r, timeout_ms);
  return sent.ok() ? got : sent;
}

std::string Connection::Impl::describe(const Request& r) const {
  std::string s = command_name(r.type);
  if (r.type != kCmdFlush) {
    s += " at offset " + std::to_string(r.offset) + " length " + std::to_string(r.length);
  }
  return s;
}

Error Connection::Impl::lost_error() const {
  return fail(VIX_E_HOST_TCP_CONN_LOST, prefix_ + "connection broken: " + broken_reason_);
}

void Connection::Impl::break_connection(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (broken_.load()) return;
    broken_reason_ = reason;
    broken_.store(true);
  }
  stream_->shutdown();  // wakes the reader, which fails everything in flight
}

// Registers the batch under fresh cookies, then sends it in one locked stretch: headers of
// payload-less requests go out together. Requests that got a cookie are in flight even when
// sending fails: the caller must wait for them.
Result<void> Connection::Impl::submit(const std::vector<std::shared_ptr<Request>>& batch,
                                      int64_t timeout_ms) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (broken_.load()) return lost_error();
    for (auto& r : batch) {
      r->cookie = next_cookie_++;
      pending_.emplace(r->cookie, r);
    }
  }
  std::vector<uint8_t> headers;
  headers.reserve(batch.size() * kHeaderSize);
  Result<void> sent = ok();
  {
    std::lock_guard<std::mutex> w(write_mu_);
    for (auto& r : batch) {
      size_t at = headers.size();
      headers.resize(at + kHeaderSize);
      header(headers.data() + at, r->type, r->flags, r->cookie, r->offset, r->length);
      if (r->write_buf) {
        sent = stream_->write_all(headers.data(), headers.size(), deadline_after_ms(timeout_ms));
        headers.clear();
        if (!sent.ok()) break;
        sent = stream_->write_all(r->write_buf, r->length, deadline_after_ms(timeout_ms));
        if (!sent.ok()) break;
      }
    }
    if (sent.ok() && !headers.empty()) {
      sent = stream_->write_all(headers.data(), headers.size(), deadline_after_ms(timeout_ms));
    }
  }
  if (!sent.ok()) {
    std::string why = "sending " + command_name(batch.front()->type) + ": " + sent.error().message;
    break_connection(why);
    return fail(sent.error().code, prefix_ + why);
  }
  return ok();
}

// timeout_ms counts from when the caller starts waiting for this request, that is from the
// previous reply of the same call: a long call is bounded per reply, not as a whole.
Result<void> Connection::Impl::wait(Request& r, int64_t timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  bool timed_out = false;
  Deadline deadline = deadline_after_ms(timeout_ms);
  if (deadline != kNoDeadline && !cv_.wait_until(lk, deadline, [&] { return r.done; })) {
    timed_out = true;
    lk.unlock();
    break_connection("no reply to " + describe(r) + " within " + std::to_string(timeout_ms) +
                     " ms");
    lk.lock();
  }
  // Also after a timeout: the reader may be filling r's buffer until it notices the shutdown.
  cv_.wait(lk, [&] { return r.done; });
  if (!r.failed) return ok();
  if (timed_out) {
    return fail(VIX_E_HOST_TCP_SOCKET_ERROR, prefix_ + describe(r) + ": timed out after " +
                                                 std::to_string(timeout_ms) +
                                                 " ms waiting for the reply; connection closed");
  }
  return r.error;
}

// --- Connection ------------------------------------------------------------------------------

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() = default;

Result<std::unique_ptr<Connection>> Connection::handshake(std::unique_ptr<Stream> stream,
                                                          const HandshakeOptions& options) {
  VIX_ASSIGN_OR_RETURN(Negotiated n, negotiate(std::move(stream), options));
  auto impl = std::make_unique<Impl>(std::move(n), options.export_name);
  impl->start();
  return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

const ExportInfo& Connection::info() const {
  return impl_->info();
}
bool Connection::broken() const {
  return impl_->broken();
}
const std::string& Connection::peer() const {
  return impl_->peer();
}
void Connection::set_max_request(uint32_t bytes) {
  impl_->set_max_request(bytes);
}

Result<void> Connection::read(uint64_t offset, uint64_t length, uint8_t* buf, int64_t timeout_ms) {
  if (length == 0) return ok();
  if (buf == nullptr) return fail(VIX_E_INVALID_ARG, impl_->prefix() + "read: no buffer");
  VIX_TRY(impl_->check_range("read", offset, length));
  return impl_->run(kCmdRead, 0, offset, length, buf, nullptr, timeout_ms);
}

Result<void> Connection::write(uint64_t offset, uint64_t length, const uint8_t* buf, bool fua,
                               int64_t timeout_ms) {
  if (info().read_only()) {
    return fail(VIX_E_FILE_READ_ONLY, impl_->prefix() + "write: the export is read-only");
  }
  if (length == 0) return ok();
  if (buf == nullptr) return fail(VIX_E_INVALID_ARG, impl_->prefix() + "write: no buffer");
  VIX_TRY(impl_->check_range("write", offset, length));
  bool native_fua = fua && info().can_fua();
  VIX_TRY(impl_->run(kCmdWrite, native_fua ? kCmdFlagFua : 0, offset, length, nullptr, buf,
                     timeout_ms));
  // Without FUA on the wire, a flush gives the same durability.
  if (fua && !native_fua) return flush(timeout_ms);
  return ok();
}

Result<void> Connection::flush(int64_t timeout_ms) {
  if (!info().can_flush() || info().read_only()) return ok();  // nothing the server could flush
  auto r = std::make_shared<Request>();
  r->type = kCmdFlush;
  return impl_->run_one(r, timeout_ms);
}

Result<void> Connection::trim(uint64_t offset, uint64_t length, int64_t timeout_ms) {
  if (info().read_only()) {
    return fail(VIX_E_FILE_READ_ONLY, impl_->prefix() + "trim: the export is read-only");
  }
  if (!info().can_trim()) {
    return fail(VIX_E_NOT_SUPPORTED, impl_->prefix() + "trim: the server does not support it");
  }
  if (length == 0) return ok();
  VIX_TRY(impl_->check_range("trim", offset, length));
  return impl_->run(kCmdTrim, 0, offset, length, nullptr, nullptr, timeout_ms);
}

Result<void> Connection::write_zeroes(uint64_t offset, uint64_t length, bool may_trim,
                                      int64_t timeout_ms) {
  if (info().read_only()) {
    return fail(VIX_E_FILE_READ_ONLY, impl_->prefix() + "write zeroes: the export is read-only");
  }
  if (length == 0) return ok();
  VIX_TRY(impl_->check_range("write zeroes", offset, length));
  if (info().can_write_zeroes()) {
    return impl_->run(kCmdWriteZeroes, may_trim ? 0 : kCmdFlagNoHole, offset, length, nullptr,
                      nullptr, timeout_ms);
  }
  // A server without WRITE_ZEROES gets ordinary writes from one bounded zero buffer.
  std::vector<uint8_t> zeroes(std::min<uint64_t>(length, 1u << 20), 0);
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min<uint64_t>(zeroes.size(), length - done);
    VIX_TRY(write(offset + done, n, zeroes.data(), false, timeout_ms));
    done += n;
  }
  return ok();
}

Result<std::vector<StatusExtent>> Connection::block_status(uint64_t offset, uint64_t length,
                                                           int64_t timeout_ms) {
  if (!info().base_allocation) {
    return fail(VIX_E_NOT_SUPPORTED,
                impl_->prefix() + "block status: the server offers no base:allocation context");
  }
  if (length == 0) return std::vector<StatusExtent>{};
  VIX_TRY(impl_->check_range("block status", offset, length));
  auto r = std::make_shared<Request>();
  r->type = kCmdBlockStatus;
  r->offset = offset;
  r->length = uint32_t(std::min(length, kMaxStatusRequest));
  VIX_TRY(impl_->run_one(r, timeout_ms));
  return std::move(r->extents);
}

}  // namespace vix::nbd
