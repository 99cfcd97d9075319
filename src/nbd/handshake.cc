// Fixed newstyle negotiation: STARTTLS (nbdssl), STRUCTURED_REPLY, SET_META_CONTEXT
// base:allocation, then GO (EXPORT_NAME only when a server does not know GO). Every option reply
// is bounded (kMaxOptionReply) and checked against the option it answers, so a hostile server
// costs an error, never memory.
#include "nbd/handshake.h"

#include <vector>

#include "nbd/protocol.h"

namespace vix::nbd {

namespace {

constexpr char kBaseAllocation[] = "base:allocation";
// Replies one option may produce (INFO, META_CONTEXT, ...) before its ACK; real servers send a
// handful, a looping server is cut off.
constexpr int kMaxRepliesPerOption = 256;

struct OptionReply {
  uint32_t type = 0;
  std::vector<uint8_t> data;
  std::string text() const { return printable(std::string(data.begin(), data.end())); }
};

class Negotiator {
 public:
  Negotiator(std::unique_ptr<Stream> stream, const HandshakeOptions& options)
      : stream_(std::move(stream)), options_(options) {
    prefix_ = "nbd " + stream_->peer() + " export '" + printable(options.export_name) + "': ";
  }

  Result<Negotiated> run() {
    if (options_.export_name.size() > kMaxString) {
      return fail(VIX_E_INVALID_ARG, prefix_ + "export name longer than 4096 bytes");
    }
    VIX_TRY(greeting());
    if (options_.start_tls) VIX_TRY(starttls());
    if (options_.want_allocation) {
      VIX_TRY(structured_reply());
      if (out_.info.structured_replies) VIX_TRY(meta_context());
    }
    VIX_TRY(go());
    out_.stream = std::move(stream_);
    return std::move(out_);
  }

 private:
  Error protocol_error(const std::string& what) const {
    return fail(VIX_E_HOST_NETBLKDEV_HANDSHAKE, prefix_ + what);
  }

  Result<void> read(void* buf, size_t len) {
    auto r = stream_->read_exact(buf, len, options_.deadline);
    if (!r.ok()) {
      Error e = std::move(r).error();
      e.message = prefix_ + "handshake: " + e.message;
      return e;
    }
    return ok();
  }
  Result<void> write(const void* buf, size_t len) {
    auto r = stream_->write_all(buf, len, options_.deadline);
    if (!r.ok()) {
      Error e = std::move(r).error();
      e.message = prefix_ + "handshake: " + e.message;
      return e;
    }
    return ok();
  }

  Result<void> greeting() {
    uint8_t hello[18];
    VIX_TRY(read(hello, 16));
    if (get_be64(hello) != kNbdMagic) return protocol_error("not an NBD server (bad greeting)");
    uint64_t second = get_be64(hello + 8);
    if (second == kOldstyleMagic) {
      return protocol_error("server speaks only the oldstyle handshake (not supported)");
    }
    if (second != kIHaveOpt) return protocol_error("bad newstyle magic in the greeting");
    VIX_TRY(read(hello + 16, 2));
    uint16_t flags = get_be16(hello + 16);
    if (!(flags & kFlagFixedNewstyle)) {
      return protocol_error("server does not offer the fixed newstyle handshake");
    }
    no_zeroes_ = flags & kFlagNoZeroes;
    uint8_t client[4];
    put_be32(client, kClientFixedNewstyle | (no_zeroes_ ? kClientNoZeroes : 0));
    return write(client, sizeof client);
  }

  Result<void> send_option(uint32_t option, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> msg(16 + data.size());
    put_be64(msg.data(), kIHaveOpt);
    put_be32(msg.data() + 8, option);
    put_be32(msg.data() + 12, uint32_t(data.size()));
    std::copy(data.begin(), data.end(), msg.begin() + 16);
    return write(msg.data(), msg.size());
  }

  Result<OptionReply> read_reply(uint32_t option) {
    uint8_t h[20];
    VIX_TRY(read(h, sizeof h));
    if (get_be64(h) != kOptReplyMagic) {
      return protocol_error("bad magic in the reply to " + option_name(option));
    }
    if (get_be32(h + 8) != option) {
      return protocol_error("reply to " + option_name(get_be32(h + 8)) + " while waiting for " +
                            option_name(option));
    }
    OptionReply reply;
    reply.type = get_be32(h + 12);
    uint32_t len = get_be32(h + 16);
    if (len > kMaxOptionReply) {
      return protocol_error("reply to " + option_name(option) + " of " + std::to_string(len) +
                            " bytes (limit " + std::to_string(kMaxOptionReply) + ")");
    }
    reply.data.resize(len);
    if (len) VIX_TRY(read(reply.data.data(), len));
    return reply;
  }

  // What an NBD_REP_ERR_* means for the caller.
  Error option_error(uint32_t option, const OptionReply& r) const {
    std::string what = option_name(option) + " refused: " + option_reply_name(r.type);
    if (!r.data.empty()) what += " (" + r.text() + ")";
    VixError code = VIX_E_HOST_NETBLKDEV_HANDSHAKE;
    switch (r.type) {
      case kRepErrUnknown:
        code = VIX_E_FILE_NOT_FOUND;
        what = "no such export on the server: " + what;
        break;
      case kRepErrPolicy:
        code = VIX_E_FILE_ACCESS_ERROR;
        break;
      case kRepErrTlsReqd:
        code = VIX_E_CANNOT_CONNECT_TO_HOST;
        what = "server requires TLS (use nbdssl): " + what;
        break;
      case kRepErrShutdown:
        code = VIX_E_HOST_TCP_CONN_LOST;
        break;
      default:
        break;
    }
    return fail(code, prefix_ + what);
  }

  Result<void> starttls() {
    VIX_TRY(send_option(kOptStartTls, {}));
    VIX_ASSIGN_OR_RETURN(OptionReply r, read_reply(kOptStartTls));
    if (r.type != kRepAck) {
      std::string why = option_reply_name(r.type);
      if (!r.data.empty()) why += " (" + r.text() + ")";
      return fail(VIX_E_CANNOT_CONNECT_TO_HOST, prefix_ + "server refused NBD_OPT_STARTTLS: " +
                                                    why + "; nbdssl never continues in plain text");
    }
    if (!r.data.empty()) return protocol_error("NBD_OPT_STARTTLS acknowledged with a payload");
    auto tls = options_.start_tls(std::move(stream_));
    if (!tls.ok()) return std::move(tls).error();
    stream_ = std::move(tls).value();
    if (!stream_) return protocol_error("TLS upgrade returned no stream");
    return ok();
  }

  Result<void> structured_reply() {
    VIX_TRY(send_option(kOptStructuredReply, {}));
    VIX_ASSIGN_OR_RETURN(OptionReply r, read_reply(kOptStructuredReply));
    if (r.type == kRepAck) {
      out_.info.structured_replies = true;
      return ok();
    }
    if (r.type & kRepFlagError) {
      if (r.type == kRepErrTlsReqd || r.type == kRepErrShutdown) {
        return option_error(kOptStructuredReply, r);
      }
      return ok();  // an older server: simple replies, no block status
    }
    return protocol_error("unexpected " + option_reply_name(r.type) +
                          " to NBD_OPT_STRUCTURED_REPLY");
  }

  static void append_string(std::vector<uint8_t>& d, const std::string& s) {
    size_t at = d.size();
    d.resize(at + 4 + s.size());
    put_be32(d.data() + at, uint32_t(s.size()));
    std::copy(s.begin(), s.end(), d.begin() + long(at) + 4);
  }

  Result<void> meta_context() {
    std::vector<uint8_t> d;
    append_string(d, options_.export_name);
    size_t at = d.size();
    d.resize(at + 4);
    put_be32(d.data() + at, 1);
    append_string(d, kBaseAllocation);
    VIX_TRY(send_option(kOptSetMetaContext, d));
    for (int i = 0; i < kMaxRepliesPerOption; ++i) {
      VIX_ASSIGN_OR_RETURN(OptionReply r, read_reply(kOptSetMetaContext));
      if (r.type == kRepAck) return ok();
      if (r.type == kRepMetaContext) {
        if (r.data.size() < 4) return protocol_error("short NBD_REP_META_CONTEXT");
        std::string name(r.data.begin() + 4, r.data.end());
        if (name == kBaseAllocation) {
          out_.meta_context_id = get_be32(r.data.data());
          out_.info.base_allocation = true;
        }
        continue;
      }
      if (r.type & kRepFlagError) {
        if (r.type == kRepErrTlsReqd || r.type == kRepErrShutdown) {
          return option_error(kOptSetMetaContext, r);
        }
        // No block status on this server; an unknown export is reported by GO below.
        out_.info.base_allocation = false;
        return ok();
      }
      return protocol_error("unexpected " + option_reply_name(r.type) +
                            " to NBD_OPT_SET_META_CONTEXT");
    }
    return protocol_error("too many replies to NBD_OPT_SET_META_CONTEXT");
  }

  Result<void> parse_info(const OptionReply& r, bool* have_export) {
    if (r.data.size() < 2) return protocol_error("short NBD_REP_INFO");
    const uint8_t* p = r.data.data();
    switch (get_be16(p)) {
      case kInfoExport:
        if (r.data.size() != 12) return protocol_error("NBD_INFO_EXPORT of wrong length");
        out_.info.size = get_be64(p + 2);
        out_.info.transmission_flags = get_be16(p + 10);
        *have_export = true;
        break;
      case kInfoBlockSize: {
        if (r.data.size() != 14) return protocol_error("NBD_INFO_BLOCK_SIZE of wrong length");
        uint32_t mn = get_be32(p + 2), pref = get_be32(p + 6), mx = get_be32(p + 10);
        auto pow2 = [](uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
        // The maximum is a multiple of the minimum, or 0xffffffff: no limit of the server's own.
        const bool unlimited = mx == 0xffffffffu;
        if (!pow2(mn) || mn > (64u << 10) || !pow2(pref) || pref < mn ||
            (!unlimited && (mx < mn || mx % mn != 0))) {
          return protocol_error("invalid NBD_INFO_BLOCK_SIZE (minimum " + std::to_string(mn) +
                                ", preferred " + std::to_string(pref) + ", maximum " +
                                std::to_string(mx) + ")");
        }
        out_.info.min_block = mn;
        out_.info.preferred_block = pref;
        out_.info.max_block = unlimited ? 32u << 20 : mx;  // the protocol's default cap
        break;
      }
      default:
        break;  // NAME, DESCRIPTION and later additions are not needed
    }
    return ok();
  }

  Result<void> go() {
    std::vector<uint8_t> d;
    append_string(d, options_.export_name);
    size_t at = d.size();
    d.resize(at + 4);
    put_be16(d.data() + at, 1);
    put_be16(d.data() + at + 2, kInfoBlockSize);
    VIX_TRY(send_option(kOptGo, d));
    bool have_export = false;
    for (int i = 0; i < kMaxRepliesPerOption; ++i) {
      VIX_ASSIGN_OR_RETURN(OptionReply r, read_reply(kOptGo));
      if (r.type == kRepInfo) {
        VIX_TRY(parse_info(r, &have_export));
        continue;
      }
      if (r.type == kRepAck) {
        if (!have_export) return protocol_error("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT");
        return ok();
      }
      if (r.type == kRepErrUnsup) return export_name();
      if (r.type & kRepFlagError) return option_error(kOptGo, r);
      return protocol_error("unexpected " + option_reply_name(r.type) + " to NBD_OPT_GO");
    }
    return protocol_error("too many replies to NBD_OPT_GO");
  }

  // The old way in: no reply on failure, the server just closes the connection.
  Result<void> export_name() {
    std::vector<uint8_t> d(options_.export_name.begin(), options_.export_name.end());
    VIX_TRY(send_option(kOptExportName, d));
    uint8_t buf[10 + 124];
    auto r = stream_->read_exact(buf, no_zeroes_ ? 10 : sizeof buf, options_.deadline);
    if (!r.ok()) {
      if (r.error().code == VIX_E_HOST_TCP_CONN_LOST) {
        return fail(VIX_E_FILE_NOT_FOUND,
                    prefix_ +
                        "server closed the connection after NBD_OPT_EXPORT_NAME "
                        "(no such export?)");
      }
      return fail(r.error().code, prefix_ + "handshake: " + r.error().message);
    }
    out_.info.size = get_be64(buf);
    out_.info.transmission_flags = get_be16(buf + 8);
    return ok();
  }

  std::unique_ptr<Stream> stream_;
  const HandshakeOptions& options_;
  std::string prefix_;
  bool no_zeroes_ = false;
  Negotiated out_;
};

}  // namespace

Result<Negotiated> negotiate(std::unique_ptr<Stream> stream, const HandshakeOptions& options) {
  if (!stream) return fail(VIX_E_INVALID_ARG, "nbd: no stream to negotiate on");
  Negotiator n(std::move(stream), options);
  return n.run();
}

}  // namespace vix::nbd
