#include "nfc/authd.h"

#include <algorithm>
#include <cctype>

#include "net/tls.h"

namespace vix::nfc {

namespace {

constexpr size_t kMaxLine = 4096;

// authd's lines end in "\r\n" (the greeting may end in "\n" only).
Result<std::string> read_line(net::Stream& s, net::Deadline deadline, const std::string& where) {
  std::string line;
  for (;;) {
    char c = 0;
    VIX_TRY(s.read_exact(&c, 1, deadline));
    if (c == '\n') break;
    if (line.size() >= kMaxLine) {
      return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                  where + ": a line longer than " + std::to_string(kMaxLine) + " bytes");
    }
    line += c;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

Result<void> send_line(net::Stream& s, const std::string& line, net::Deadline deadline) {
  const std::string wire = line + "\r\n";
  return s.write_all(wire.data(), wire.size(), deadline);
}

bool is_code(const std::string& line, char first) {
  return line.size() >= 3 && line[0] == first &&
         std::isdigit(static_cast<unsigned char>(line[1])) &&
         std::isdigit(static_cast<unsigned char>(line[2]));
}

// One command and its answer, which must be a 2xx line.
Result<void> command(net::Stream& s, const std::string& line, const std::string& shown,
                     net::Deadline deadline, const std::string& where) {
  VIX_TRY(send_line(s, line, deadline));
  auto reply = read_line(s, deadline, where + " " + shown);
  if (!reply.ok()) {
    return fail(reply.error().code,
                where + ": no answer to " + shown + ": " + reply.error().message);
  }
  if (!is_code(*reply, '2')) {
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST, where + ": authd refused " + shown + ": " +
                                                  (reply->empty() ? "(empty line)" : *reply));
  }
  return ok();
}

net::TlsOptions tls_options(const AuthdOptions& o, const std::string& label) {
  net::TlsOptions t;
  t.thumbprints = o.thumbprints;
  t.ca_file = o.ca_file;
  t.server_name = o.host;
  t.label = label;
  t.thumbprint_key = "the ticket's sslThumbprint (or vixfs.nfc.thumbprint)";
  t.ca_key = "vixfs.nfc.caFile";
  t.psk_key.clear();
  return t;
}

}  // namespace

Result<std::unique_ptr<net::Stream>> authd_connect(const AuthdOptions& o, bool* unreachable) {
  const std::string where = "NFC " + o.host + ":" + std::to_string(o.port);
  net::Endpoint endpoint;
  endpoint.host = o.host;
  endpoint.port = o.port;
  auto plain = net::connect_stream(endpoint, std::min(o.deadline, o.connect_deadline));
  if (!plain.ok()) {
    if (unreachable != nullptr) *unreachable = true;
    return fail(plain.error().code, where + ": connect: " + plain.error().message);
  }

  auto greeting = read_line(**plain, o.deadline, where + " greeting");
  if (!greeting.ok()) {
    return fail(greeting.error().code, where + ": no authd greeting: " + greeting.error().message);
  }
  if (!is_code(*greeting, '2')) {
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                where + ": not a VMware authentication daemon: " + greeting->substr(0, 200));
  }

  VIX_ASSIGN_OR_RETURN(auto authd,
                       net::start_tls(std::move(*plain), tls_options(o, "NFC authd"), o.deadline));
  // SESSION gets no answer: waiting for one would hang.
  VIX_TRY(send_line(*authd, "SESSION " + o.session_id, o.deadline));
  VIX_TRY(command(*authd, "BANNER ", "BANNER", o.deadline, where));
  VIX_TRY(command(*authd, "THUMBPRINT_SHA2 PlainText", "THUMBPRINT_SHA2", o.deadline, where));
  const std::string proxy = "PROXY " + o.service + (o.data_tls ? "ssl" : "");
  VIX_TRY(command(*authd, proxy, proxy, o.deadline, where));

  // Both sides leave the authd session without a close_notify; NFC starts on the bare socket.
  const int fd = authd->release_fd();
  authd.reset();
  if (fd < 0) return fail(VIX_E_FAIL, where + ": the authd TLS session kept its socket");
  auto raw = net::adopt_socket(fd, o.host + ":" + std::to_string(o.port));
  if (!o.data_tls) return raw;
  return net::start_tls(std::move(raw), tls_options(o, "NFC nbdssl"), o.deadline);
}

}  // namespace vix::nfc
