// The reply reader: one thread per connection reads simple replies and structured chunks,
// matches them to requests by cookie and fills the callers' buffers in place. Whatever does not
// fit the request it answers (unknown cookie, chunk outside the range, overlap, short coverage,
// oversized chunk) ends the connection: a hostile server gets an error, never memory or a crash.
#include <cstdio>
#include <cstring>

#include "nbd/connection_impl.h"
#include "nbd/protocol.h"

namespace vix::nbd {

namespace {

// Disjoint pieces a structured read reply may arrive in before it counts as hostile.
constexpr size_t kMaxFragments = 1u << 16;
// Largest BLOCK_STATUS chunk accepted: 512 Ki extents.
constexpr uint32_t kMaxStatusChunk = 4 + 8 * (512u << 10);
// Largest error chunk: code, length, a message at the protocol's string limit, offset.
constexpr uint32_t kMaxErrorChunk = 6 + kMaxString + 8;

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// A reply that breaks the protocol; the text becomes the broken connection's reason.
Error protocol(const std::string& what) {
  return fail(VIX_E_HOST_NETBLKDEV_HANDSHAKE, what);
}

}  // namespace

Result<void> Connection::Impl::read(void* buf, size_t len) {
  // No deadline here: timeouts belong to the waiting callers, who shut the stream down.
  return stream_->read_exact(buf, len, kNoDeadline);
}

void Connection::Impl::reader_loop() {
  std::string reason;
  for (;;) {
    auto r = read_one_reply();
    if (!r.ok()) {
      reason = r.error().message;
      break;
    }
  }
  break_connection(reason);
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [cookie, req] : pending_) {
    if (req->done) continue;
    req->failed = true;
    req->error = lost_error();
    req->done = true;
  }
  pending_.clear();
  cv_.notify_all();
}

std::shared_ptr<Request> Connection::Impl::find(uint64_t cookie) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pending_.find(cookie);
  return it == pending_.end() ? nullptr : it->second;
}

void Connection::Impl::complete(Request& r) {
  std::lock_guard<std::mutex> lk(mu_);
  pending_.erase(r.cookie);
  r.done = true;
  cv_.notify_all();
}

Error Connection::Impl::server_error(const Request& r, uint32_t err, const std::string& msg) const {
  std::string text = prefix_ + describe(r) + ": " + errno_name(err);
  if (!msg.empty()) text += " (server: " + printable(msg) + ")";
  return fail(errno_to_vix(err), text);
}

Result<void> Connection::Impl::in_request(const Request& r, uint64_t off, uint64_t len,
                                          const char* what) const {
  if (off < r.offset || len > r.length || off - r.offset > r.length - len) {
    return protocol(std::string(what) + " for offset " + std::to_string(off) + " length " +
                    std::to_string(len) + " lies outside " + describe(r));
  }
  return ok();
}

Result<void> Connection::Impl::cover(Request& r, uint64_t off, uint64_t len) {
  uint64_t end = off + len;
  auto next = r.covered.upper_bound(off);
  if (next != r.covered.end() && next->first < end) {
    return protocol("overlapping chunks in the reply to " + describe(r));
  }
  if (next != r.covered.begin()) {
    auto prev = std::prev(next);
    if (prev->second > off) return protocol("overlapping chunks in the reply to " + describe(r));
    if (prev->second == off) {
      off = prev->first;
      r.covered.erase(prev);
    }
  }
  if (next != r.covered.end() && next->first == end) {
    end = next->second;
    r.covered.erase(next);
  }
  r.covered.emplace(off, end);
  r.covered_bytes += len;
  if (r.covered.size() > kMaxFragments) {
    return protocol("reply to " + describe(r) + " split into too many pieces");
  }
  return ok();
}

Result<void> Connection::Impl::read_one_reply() {
  uint8_t h[32];
  VIX_TRY(read(h, 4));
  uint32_t magic = get_be32(h);
  if (magic == kSimpleReplyMagic) {
    VIX_TRY(read(h + 4, 12));
    uint32_t err = get_be32(h + 4);
    uint64_t cookie = get_be64(h + 8);
    auto r = find(cookie);
    if (!r) return protocol("simple reply for unknown cookie " + hex(cookie));
    if (r->structured) return protocol("simple reply after structured chunks for " + describe(*r));
    if (err != 0) {
      r->failed = true;
      r->error = server_error(*r, err, "");
    } else if (r->type == kCmdRead) {
      VIX_TRY(read(r->read_buf, r->length));
    } else if (r->type == kCmdBlockStatus) {
      return protocol("simple reply to " + describe(*r) + " (block status needs chunks)");
    }
    complete(*r);
    return ok();
  }
  if (magic != kStructuredReplyMagic) return protocol("bad reply magic " + hex(magic));
  if (!info_.structured_replies) return protocol("structured reply that was never negotiated");
  VIX_TRY(read(h + 4, 16));
  uint16_t flags = get_be16(h + 4);
  uint16_t type = get_be16(h + 6);
  uint64_t cookie = get_be64(h + 8);
  uint32_t len = get_be32(h + 16);
  auto r = find(cookie);
  if (!r) return protocol("structured reply chunk for unknown cookie " + hex(cookie));
  r->structured = true;
  VIX_TRY(read_chunk(*r, flags, type, len));
  if (flags & kReplyFlagDone) {
    VIX_TRY(finish_structured(*r));
    complete(*r);
  }
  return ok();
}

Result<void> Connection::Impl::read_chunk(Request& r, uint16_t flags, uint16_t type, uint32_t len) {
  std::string chunk = "reply chunk type " + std::to_string(type);
  switch (type) {
    case kReplyTypeNone:
      if (len != 0 || !(flags & kReplyFlagDone)) return protocol("malformed NBD_REPLY_TYPE_NONE");
      return ok();
    case kReplyTypeOffsetData: {
      if (r.type != kCmdRead) return protocol("data chunk in the reply to " + describe(r));
      if (len <= 8 || len - 8 > r.length) {
        return protocol("data chunk of " + std::to_string(len) + " bytes for " + describe(r));
      }
      uint8_t b[8];
      VIX_TRY(read(b, 8));
      uint64_t off = get_be64(b);
      uint32_t dlen = len - 8;
      VIX_TRY(in_request(r, off, dlen, "data chunk"));
      VIX_TRY(cover(r, off, dlen));
      return read(r.read_buf + (off - r.offset), dlen);
    }
    case kReplyTypeOffsetHole: {
      if (r.type != kCmdRead || len != 12)
        return protocol("malformed hole chunk for " + describe(r));
      uint8_t b[12];
      VIX_TRY(read(b, 12));
      uint64_t off = get_be64(b);
      uint32_t hlen = get_be32(b + 8);
      if (hlen == 0) return protocol("empty hole chunk for " + describe(r));
      VIX_TRY(in_request(r, off, hlen, "hole chunk"));
      VIX_TRY(cover(r, off, hlen));
      std::memset(r.read_buf + (off - r.offset), 0, hlen);
      return ok();
    }
    case kReplyTypeBlockStatus: {
      if (r.type != kCmdBlockStatus || len < 12 || (len - 4) % 8 != 0 || len > kMaxStatusChunk) {
        return protocol("malformed block status chunk (" + std::to_string(len) + " bytes) for " +
                        describe(r));
      }
      std::vector<uint8_t> b(len);
      VIX_TRY(read(b.data(), len));
      if (get_be32(b.data()) != meta_id_) {
        return protocol("block status for meta context " + std::to_string(get_be32(b.data())) +
                        " that was never negotiated");
      }
      if (r.have_status) return protocol("second block status chunk for " + describe(r));
      r.have_status = true;
      uint64_t pos = r.offset, end = r.offset + r.length;
      for (uint32_t i = 4; i < len && pos < end; i += 8) {
        uint32_t elen = get_be32(b.data() + i);
        if (elen == 0) return protocol("empty extent in block status for " + describe(r));
        uint64_t take = std::min<uint64_t>(elen, end - pos);  // the last may run past the end
        r.extents.push_back({pos, take, get_be32(b.data() + i + 4)});
        pos += take;
      }
      return ok();
    }
    default:
      break;
  }
  if (!(type & kReplyTypeFlagError)) return protocol("unknown " + chunk + " for " + describe(r));
  if (len < 6 || len > kMaxErrorChunk) return protocol("malformed error chunk for " + describe(r));
  std::vector<uint8_t> b(len);
  VIX_TRY(read(b.data(), len));
  uint32_t err = get_be32(b.data());
  uint16_t mlen = get_be16(b.data() + 4);
  size_t want = 6 + size_t(mlen) + (type == kReplyTypeErrorOffset ? 8 : 0);
  bool known = type == kReplyTypeError || type == kReplyTypeErrorOffset;
  // Error types this client does not know still start with code and message.
  bool fits = known ? len == want : len >= want;
  if (err == 0 || !fits) return protocol("malformed error chunk for " + describe(r));
  std::string msg(b.begin() + 6, b.begin() + 6 + mlen);
  if (type == kReplyTypeErrorOffset) {
    uint64_t off = get_be64(b.data() + 6 + mlen);
    VIX_TRY(in_request(r, off, 1, "error chunk"));
    msg += (msg.empty() ? "" : ", ") + std::string("at offset ") + std::to_string(off);
  }
  if (!r.failed) {
    r.failed = true;
    r.error = server_error(r, err, msg);
  }
  return ok();
}

Result<void> Connection::Impl::finish_structured(Request& r) {
  if (r.failed) return ok();
  if (r.type == kCmdRead && r.covered_bytes != r.length) {
    return protocol("reply to " + describe(r) + " covered " + std::to_string(r.covered_bytes) +
                    " of " + std::to_string(r.length) + " bytes");
  }
  if (r.type == kCmdBlockStatus && !r.have_status) {
    return protocol("reply to " + describe(r) + " ended without block status");
  }
  return ok();
}

}  // namespace vix::nbd
