#include "nfc/session.h"

#include <algorithm>
#include <cstring>

namespace vix::nfc {

namespace {

// Replies other than read data are small; anything larger is a server out of step.
constexpr uint32_t kMaxSmallPayload = 1u << 20;
constexpr uint32_t kMaxFragment = 64u << 20;

template <size_t N>
std::vector<uint8_t> bytes_of(const std::array<uint8_t, N>& a) {
  return std::vector<uint8_t>(a.begin(), a.end());
}

std::vector<uint8_t> u32s(std::initializer_list<uint32_t> values) {
  std::vector<uint8_t> out(values.size() * 4);
  size_t i = 0;
  for (uint32_t v : values) store_le32(out.data() + 4 * i++, v);
  return out;
}

Error reply_error(const std::string& where, uint32_t type, const ErrorReply& e) {
  const VixError code = e.code == kErrorAllocation ? VIX_E_OUT_OF_MEMORY : VIX_E_FILE_ERROR;
  return fail(code, where + ": " + std::string(aio_type_name(type)) + " refused by the host: " +
                        (e.text.empty() ? "NFC error " + std::to_string(e.code) : e.text));
}

}  // namespace

Session::Session(std::unique_ptr<net::Stream> stream, std::string where)
    : stream_(std::move(stream)), where_(std::move(where)) {}

Session::~Session() {
  break_session(fail(VIX_E_HOST_TCP_CONN_LOST, where_ + ": the session was closed"));
  if (reader_.joinable()) reader_.join();
}

Error Session::protocol_error(const std::string& why) const {
  return fail(VIX_E_FAIL, where_ + ": NFC protocol violation: " + why);
}

bool Session::broken() const {
  std::lock_guard lock(mu_);
  return broken_;
}

void Session::shutdown() {
  break_session(fail(VIX_E_HOST_TCP_CONN_LOST, where_ + ": the session was shut down"));
}

void Session::break_session(const Error& why) {
  {
    std::lock_guard lock(mu_);
    if (broken_) return;
    broken_ = true;
    broken_error_ = why;
    for (auto& [id, p] : pending_) {
      if (p->done) continue;
      p->done = true;
      p->error = why;
    }
  }
  stream_->shutdown();
  cv_.notify_all();
}

// --- Opening ------------------------------------------------------------------------------------

Result<std::unique_ptr<Session>> Session::open(std::unique_ptr<net::Stream> stream,
                                               const SessionOptions& options) {
  if (!stream) return fail(VIX_E_INVALID_ARG, options.where + ": no stream");
  if (options.path.size() > 4096) {
    return fail(VIX_E_INVALID_ARG, options.where + ": path longer than 4096 bytes");
  }
  std::unique_ptr<Session> s(new Session(std::move(stream), options.where));
  VIX_TRY(s->handshake(options));
  s->reader_ = std::thread([raw = s.get()] { raw->reader_loop(); });
  return s;
}

Result<void> Session::handshake(const SessionOptions& o) {
  const net::Deadline d = o.deadline;
  auto send = [&](const ClassicMessage& m) { return stream_->write_all(m.data(), m.size(), d); };
  auto expect = [&](uint32_t type, const char* step) -> Result<ClassicMessage> {
    ClassicMessage m{};
    auto r = stream_->read_exact(m.data(), m.size(), d);
    if (!r.ok()) {
      return fail(r.error().code, where_ + ": handshake (" + step + "): " + r.error().message);
    }
    if (classic_type(m) == kClassicError) {
      return fail(VIX_E_HOST_NETBLKDEV_HANDSHAKE,
                  where_ + ": handshake (" + step + ") refused: " + classic_error_text(m));
    }
    if (classic_type(m) != type) {
      return fail(VIX_E_HOST_NETBLKDEV_HANDSHAKE,
                  where_ + ": handshake (" + step + "): message type " +
                      std::to_string(classic_type(m)) + ", expected " + std::to_string(type));
    }
    return m;
  };

  ClassicMessage random = classic_message(kClientRandom);
  std::memcpy(random.data() + 4, "PlainText", 9);
  VIX_TRY(send(random));
  VIX_TRY(send(classic_message(kSessionParams)));
  VIX_TRY(expect(kSessionParamsReply, "session parameters"));
  VIX_TRY(send(classic_message(kVersion, {kClientVersion})));
  VIX_ASSIGN_OR_RETURN(ClassicMessage version, expect(kVersion, "version"));
  server_version_ = classic_u32(version, 4);
  if (server_version_ < kMinServerVersion) {
    return fail(VIX_E_HOST_NETBLKDEV_HANDSHAKE,
                where_ + ": NFC server version " + std::to_string(server_version_) +
                    " is older than " + std::to_string(kMinServerVersion));
  }
  // VDDK's own client name and operation id: hosts have only ever seen these.
  static constexpr char kName[] = "vddk", kOp[] = "nbdmode";
  VIX_TRY(send(classic_message(kClientName, {4, 7})));
  VIX_TRY(stream_->write_all(kName, 4, d));
  VIX_TRY(stream_->write_all(kOp, 7, d));
  VIX_TRY(send(classic_message(kFeatures, {0x3})));
  VIX_TRY(send(classic_message(kAioSession)));
  VIX_TRY(expect(kAioSession, "AIO session"));

  fragment_size_ = o.buffer_size != 0 ? o.buffer_size : 64 * 1024;
  VIX_TRY(exchange(kOpenSession, u32s({0, o.buffer_size, 0, 0}), "", d));
  VIX_TRY(exchange(kSetSockOpts, std::vector<uint8_t>(12, 0), "", d));
  VIX_TRY(exchange(kSetResPool, u32s({1}), "", d));
  auto open = exchange(kOpenFile, bytes_of(encode_open_file(uint32_t(o.path.size()), o.read_only)),
                       o.path, d);
  if (!open.ok()) {
    return fail(open.error().code, open.error().message + " (opening " + o.path + ")");
  }
  VIX_ASSIGN_OR_RETURN(file_, decode_open_file(*open, where_ + " " + o.path));
  return ok();
}

Result<std::vector<uint8_t>> Session::exchange(uint32_t type, const std::vector<uint8_t>& payload,
                                               const std::string& extra, net::Deadline d) {
  const OpId id = next_op_++;
  const std::string step = std::string(aio_type_name(type));
  auto frame = encode_header({type, uint32_t(payload.size()), id});
  VIX_TRY(stream_->write_all(frame.data(), frame.size(), d));
  VIX_TRY(stream_->write_all(payload.data(), payload.size(), d));
  if (!extra.empty()) VIX_TRY(stream_->write_all(extra.data(), extra.size(), d));

  uint8_t raw[kHeaderSize];
  auto r = stream_->read_exact(raw, sizeof raw, d);
  if (!r.ok()) return fail(r.error().code, where_ + ": " + step + ": " + r.error().message);
  VIX_ASSIGN_OR_RETURN(Header h, decode_header(raw, where_ + " " + step));
  if (h.size > kMaxSmallPayload) {
    return protocol_error(step + " reply of " + std::to_string(h.size) + " bytes");
  }
  std::vector<uint8_t> reply(h.size);
  VIX_TRY(stream_->read_exact(reply.data(), reply.size(), d));
  if (h.type == kError) {
    std::string text(error_text_after(reply), '\0');
    VIX_TRY(stream_->read_exact(text.data(), text.size(), d));
    return reply_error(where_, type, decode_error(reply, text));
  }
  if (h.type != type || h.op_id != id) {
    return protocol_error(step + " answered by type " + std::to_string(h.type) + " opId " +
                          std::to_string(h.op_id) + " (expected " + std::to_string(type) +
                          " opId " + std::to_string(id) + ")");
  }
  return reply;
}

// --- Requests -----------------------------------------------------------------------------------

Result<Session::OpId> Session::enlist(std::shared_ptr<Pending> pending) {
  std::lock_guard lock(mu_);
  if (broken_) return *broken_error_;
  const OpId id = next_op_++;
  pending_[id] = std::move(pending);
  return id;
}

Result<void> Session::send_frame(const Header& h, const uint8_t* payload, const void* extra,
                                 size_t extra_len, net::Deadline deadline) {
  auto frame = encode_header(h);
  Result<void> r = stream_->write_all(frame.data(), frame.size(), deadline);
  if (r.ok()) r = stream_->write_all(payload, h.size, deadline);
  if (r.ok() && extra_len > 0) r = stream_->write_all(extra, extra_len, deadline);
  if (!r.ok()) {
    r = fail(r.error().code,
             where_ + ": sending " + std::string(aio_type_name(h.type)) + ": " + r.error().message);
    break_session(r.error());
  }
  return r;
}

Result<Session::OpId> Session::start(uint32_t type, std::shared_ptr<Pending> pending,
                                     const std::vector<uint8_t>& payload, const std::string& extra,
                                     net::Deadline deadline) {
  pending->type = type;
  VIX_ASSIGN_OR_RETURN(OpId id, enlist(std::move(pending)));
  std::lock_guard wlock(write_mu_);
  // A failure broke the session: wait() reports it.
  (void)send_frame({type, uint32_t(payload.size()), id}, payload.data(), extra.data(), extra.size(),
                   deadline);
  return id;
}

Result<Session::OpId> Session::start_read(uint64_t offset, uint32_t len, void* buf,
                                          uint32_t compression, net::Deadline deadline) {
  if (len == 0 || len > kMaxFragment) {
    return fail(VIX_E_INVALID_ARG, where_ + ": read of " + std::to_string(len) + " bytes");
  }
  auto p = std::make_shared<Pending>();
  p->buf = static_cast<uint8_t*>(buf);
  p->offset = offset;
  p->len = len;
  IoPayload io;
  io.handle = file_.handle;
  io.read = true;
  io.compression = compression;
  io.offset = offset;
  io.total = len;
  io.fragment_length = len;
  io.extra = len;
  return start(kIo, std::move(p), bytes_of(encode_io(io)), "", deadline);
}

Result<Session::OpId> Session::start_write(uint64_t offset, uint32_t len, const void* buf,
                                           net::Deadline deadline) {
  if (len == 0 || len > kMaxFragment) {
    return fail(VIX_E_INVALID_ARG, where_ + ": write of " + std::to_string(len) + " bytes");
  }
  auto p = std::make_shared<Pending>();
  p->type = kIo;
  p->offset = offset;
  p->len = len;
  VIX_ASSIGN_OR_RETURN(OpId id, enlist(std::move(p)));
  // Every fragment under one lock: the server takes a write's fragments as one stream.
  std::lock_guard wlock(write_mu_);
  const auto* data = static_cast<const uint8_t*>(buf);
  for (uint32_t done = 0; done < len;) {
    const uint32_t n = std::min(fragment_size_, len - done);
    IoPayload io;
    io.handle = file_.handle;
    io.offset = offset;
    io.total = len;
    io.fragment_offset = done;
    io.fragment_length = n;
    io.extra = n;
    const auto payload = encode_io(io);
    if (!send_frame({kIo, uint32_t(kIoSize), id}, payload.data(), data + done, n, deadline).ok()) {
      break;  // the session broke: wait() reports it
    }
    done += n;
  }
  return id;
}

Result<void> Session::wait(OpId id, net::Deadline deadline) {
  std::unique_lock lock(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end())
    return fail(VIX_E_INVALID_ARG, where_ + ": no request " + std::to_string(id));
  std::shared_ptr<Pending> p = it->second;
  auto finished = [&] { return p->done && !p->busy; };
  if (!cv_.wait_until(lock, deadline, finished)) {
    lock.unlock();
    break_session(fail(VIX_E_HOST_TCP_SOCKET_ERROR,
                       where_ + ": " + std::string(aio_type_name(p->type)) + " at " +
                           std::to_string(p->offset) + ": no reply in time (timed out)"));
    lock.lock();
    cv_.wait(lock, finished);
  }
  pending_.erase(id);
  if (p->error) return *p->error;
  return ok();
}

Result<std::vector<uint8_t>> Session::call(uint32_t type, const std::vector<uint8_t>& payload,
                                           const std::string& extra, size_t extra_expected,
                                           net::Deadline deadline) {
  auto p = std::make_shared<Pending>();
  p->extra_expected = extra_expected;
  VIX_ASSIGN_OR_RETURN(OpId id, start(type, p, payload, extra, deadline));
  VIX_TRY(wait(id, deadline));
  return std::move(p->reply);
}

Result<std::vector<uint8_t>> Session::query_allocated(uint64_t start, uint64_t chunk,
                                                      uint64_t count, net::Deadline deadline) {
  if (chunk == 0 || count == 0 || count > (uint64_t(1) << 32)) {
    return fail(VIX_E_INVALID_ARG, where_ + ": QUERY_ALLOCATED_BLOCKS of " + std::to_string(count) +
                                       " chunks of " + std::to_string(chunk) + " bytes");
  }
  const size_t bitmap = allocation_bitmap_bytes(count);
  VIX_ASSIGN_OR_RETURN(
      auto reply,
      call(kQueryAllocated, bytes_of(encode_query_allocated(file_.handle, chunk, start, count)), "",
           bitmap, deadline));
  if (reply.size() < kQueryAllocatedSize + (count + 7) / 8) {
    return protocol_error("QUERY_ALLOCATED_BLOCKS reply of " + std::to_string(reply.size()) +
                          " bytes for " + std::to_string(count) + " chunks");
  }
  return std::vector<uint8_t>(reply.begin() + kQueryAllocatedSize, reply.end());
}

Result<std::string> Session::ddb_get(const std::string& key, net::Deadline deadline) {
  std::vector<uint8_t> payload(16, 0);
  store_le64(payload.data(), file_.handle);
  store_le32(payload.data() + 8, uint32_t(key.size()));
  VIX_ASSIGN_OR_RETURN(auto reply, call(kDdbGet, payload, key, 0, deadline));
  std::string value(reply.begin(), reply.end());
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

Result<void> Session::close(net::Deadline deadline) {
  std::vector<uint8_t> handle(8);
  store_le64(handle.data(), file_.handle);
  auto as_status = [](auto r) -> Result<void> {
    if (!r.ok()) return std::move(r).error();
    return ok();
  };
  Result<void> result = as_status(call(kCloseFile, handle, "", 0, deadline));
  if (result.ok()) result = as_status(call(kCloseSession, u32s({0}), "", 0, deadline));
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  if (result.ok()) {
    std::lock_guard wlock(write_mu_);
    auto done = classic_message(kSessionComplete);
    result = stream_->write_all(done.data(), done.size(), deadline);
  }
  break_session(fail(VIX_E_HOST_TCP_CONN_LOST, where_ + ": the session was closed"));
  return result;
}

// --- The reader ---------------------------------------------------------------------------------

void Session::reader_loop() {
  for (;;) {
    uint8_t raw[kHeaderSize];
    auto r = stream_->read_exact(raw, sizeof raw, net::kNoDeadline);
    if (r.ok()) {
      auto h = decode_header(raw, where_);
      r = h.ok() ? read_reply(*h) : Result<void>(h.error());
    }
    if (!r.ok()) {
      bool quiet;
      {
        std::lock_guard lock(mu_);
        quiet = closing_ || broken_;
      }
      if (!quiet) break_session(r.error());
      return;
    }
  }
}

Result<void> Session::read_reply(const Header& h) {
  std::shared_ptr<Pending> p;
  {
    std::lock_guard lock(mu_);
    auto it = pending_.find(h.op_id);
    if (it != pending_.end() && !it->second->done) p = it->second;
  }
  if (!p) {
    return protocol_error("a " + std::string(aio_type_name(h.type)) + " reply for opId " +
                          std::to_string(h.op_id) + ", which has no request in flight");
  }
  if (h.type != kError && h.type != p->type) {
    return protocol_error(std::string(aio_type_name(p->type)) + " opId " + std::to_string(h.op_id) +
                          " answered by type " + std::to_string(h.type));
  }
  if (h.type == kIo && p->buf != nullptr) return read_fragment(h, p);

  if (h.size > kMaxSmallPayload) {
    return protocol_error(std::string(aio_type_name(h.type)) + " reply of " +
                          std::to_string(h.size) + " bytes");
  }
  std::vector<uint8_t> payload(h.size);
  VIX_TRY(stream_->read_exact(payload.data(), payload.size(), net::kNoDeadline));
  std::optional<Error> error;
  if (h.type == kError) {
    std::string text(error_text_after(payload), '\0');
    VIX_TRY(stream_->read_exact(text.data(), text.size(), net::kNoDeadline));
    error = reply_error(where_, p->type, decode_error(payload, text));
  } else if (p->extra_expected > 0 && payload.size() == kQueryAllocatedSize) {
    // The bitmap after a 48-byte body, when the header's size did not count it.
    payload.resize(kQueryAllocatedSize + p->extra_expected);
    VIX_TRY(stream_->read_exact(payload.data() + kQueryAllocatedSize, p->extra_expected,
                                net::kNoDeadline));
  } else if (h.type == kIo && payload.size() >= kIoSize) {
    // A write's reply: the whole write must be acknowledged.
    IoPayload io = decode_io(payload.data());
    if (io.extra != 0) return protocol_error("a write reply carrying data");
  }
  {
    std::lock_guard lock(mu_);
    if (!p->done) {
      p->done = true;
      p->error = std::move(error);
      p->reply = std::move(payload);
    }
  }
  cv_.notify_all();
  return ok();
}

Result<void> Session::read_fragment(const Header& h, const std::shared_ptr<Pending>& p) {
  if (h.size != kIoSize) {
    return protocol_error("read fragment header of " + std::to_string(h.size) +
                          " bytes (expected 44)");
  }
  uint8_t raw[kIoSize];
  VIX_TRY(stream_->read_exact(raw, sizeof raw, net::kNoDeadline));
  const IoPayload io = decode_io(raw);
  const std::string at = "read at " + std::to_string(p->offset) + "+" + std::to_string(p->len);
  if (io.offset != p->offset || io.total != p->len) {
    return protocol_error(at + ": fragment for " + std::to_string(io.offset) + "+" +
                          std::to_string(io.total));
  }
  if (io.fragment_length == 0 || io.fragment_offset > p->len ||
      io.fragment_length > p->len - io.fragment_offset) {
    return protocol_error(at + ": fragment [" + std::to_string(io.fragment_offset) + ", +" +
                          std::to_string(io.fragment_length) + ") passes the request's end");
  }
  const uint64_t max_wire = uint64_t(io.fragment_length) + io.fragment_length / 8 + 1024;
  if (io.compression == kNone ? io.extra != io.fragment_length : io.extra > max_wire) {
    return protocol_error(at + ": fragment of " + std::to_string(io.fragment_length) +
                          " bytes sent as " + std::to_string(io.extra) + " (" +
                          std::string(compression_name(io.compression)) + ")");
  }
  {
    std::lock_guard lock(mu_);
    auto next = p->pieces.lower_bound(io.fragment_offset);
    const bool overlaps_next =
        next != p->pieces.end() && next->first < io.fragment_offset + io.fragment_length;
    const bool overlaps_prev =
        next != p->pieces.begin() &&
        std::prev(next)->first + std::prev(next)->second > io.fragment_offset;
    if (overlaps_next || overlaps_prev) {
      return protocol_error(at + ": fragment [" + std::to_string(io.fragment_offset) + ", +" +
                            std::to_string(io.fragment_length) +
                            ") overlaps bytes already received");
    }
    if (p->done) {
      // Failed meanwhile (shutdown): the stream is going away; nothing is placed.
      return fail(VIX_E_HOST_TCP_CONN_LOST, where_ + ": shut down");
    }
    p->pieces.emplace(io.fragment_offset, io.fragment_length);
    p->busy = true;
  }
  Result<void> r = ok();
  uint8_t* dest = p->buf + io.fragment_offset;
  if (io.compression == kNone) {
    r = stream_->read_exact(dest, io.fragment_length, net::kNoDeadline);
  } else {
    scratch_.resize(io.extra);
    r = stream_->read_exact(scratch_.data(), io.extra, net::kNoDeadline);
    if (r.ok()) {
      r = decompress(io.compression, scratch_.data(), io.extra, dest, io.fragment_length);
      if (!r.ok()) r = protocol_error(at + ": " + r.error().message);
    }
  }
  {
    std::lock_guard lock(mu_);
    p->busy = false;
    if (r.ok()) {
      p->received += io.fragment_length;
      if (p->received == p->len && !p->done) p->done = true;
    }
  }
  cv_.notify_all();
  return r;
}

}  // namespace vix::nfc
