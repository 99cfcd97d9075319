// TLS over an NBD socket with OpenSSL. The socket is non-blocking and every SSL_* call runs under
// one mutex; waiting for the socket (WANT_READ / WANT_WRITE) happens in poll() outside it. That
// is what lets the connection's reader thread sit in read_exact while a writer sends: OpenSSL's
// SSL object tolerates interleaved calls, not simultaneous ones. Renegotiation is off, so a write
// never needs to read and a read only writes on its own behalf (TLS 1.3 KeyUpdate replies).
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <utility>

#include "common/tls_trust.h"
#include "net/tls_psk.h"

namespace vix::net {

namespace {

using std::chrono::milliseconds;

// --- A socket BIO that never raises SIGPIPE ---------------------------------------------------
// OpenSSL's own socket BIO write()s, and a server that has gone away would kill the process.

int fd_of(BIO* bio) {
  return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
}

int bio_write(BIO* bio, const char* data, int len) {
  BIO_clear_retry_flags(bio);
  for (;;) {
    ssize_t n = ::send(fd_of(bio), data, size_t(len), MSG_NOSIGNAL);
    if (n >= 0) return int(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return -1;
  }
}

int bio_read(BIO* bio, char* data, int len) {
  BIO_clear_retry_flags(bio);
  for (;;) {
    ssize_t n = ::recv(fd_of(bio), data, size_t(len), 0);
    if (n >= 0) return int(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return -1;
  }
}

int bio_puts(BIO* bio, const char* text) {
  return bio_write(bio, text, int(std::strlen(text)));
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

// Allocated once and kept for the process's life (reachable, so not a leak).
const BIO_METHOD* socket_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "vixfs nbd socket");
    if (m == nullptr) return static_cast<BIO_METHOD*>(nullptr);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_puts(m, bio_puts);
    BIO_meth_set_ctrl(m, bio_ctrl);
    return m;
  }();
  return method;
}

// --- What the peer is trusted by ----------------------------------------------------------------

// The pinned thumbprints, and what the server presented (for the mismatch message).
struct PinCheck {
  std::vector<std::string> expected;  // normalised hex, SHA-1 (40) or SHA-256 (64)
  std::string display;                // "AA:BB:.. or CC:DD:..", as the user would compare them
  bool mismatch = false;
  PresentedThumbprints presented;
};

// Replaces OpenSSL's chain verification when thumbprints are pinned: vSphere and ESXi
// certificates are self-signed, so only the leaf's digest says who the server is.
int pin_verify(X509_STORE_CTX* ctx, void* arg) {
  auto* pin = static_cast<PinCheck*>(arg);
  X509* leaf = X509_STORE_CTX_get0_cert(ctx);
  if (leaf == nullptr) {
    pin->mismatch = true;
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  pin->presented = thumbprints_of(leaf);
  if (pin_matches(pin->expected, pin->presented)) {
    X509_STORE_CTX_set_error(ctx, X509_V_OK);
    return 1;
  }
  pin->mismatch = true;
  X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
  return 0;
}

// With only a pre-shared key configured, a certificate handshake has nothing to check against.
int refuse_certificate(X509_STORE_CTX* ctx, void* arg) {
  *static_cast<bool*>(arg) = true;
  X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
  return 0;
}

unsigned int psk_client(SSL* ssl, const char*, char* identity, unsigned int max_identity_len,
                        unsigned char* key, unsigned int max_key_len) {
  const auto* psk = static_cast<const PskEntry*>(SSL_get_app_data(ssl));
  if (psk == nullptr || psk->identity.size() + 1 > max_identity_len ||
      psk->key.size() > max_key_len || psk->key.empty()) {
    return 0;
  }
  std::memcpy(identity, psk->identity.c_str(), psk->identity.size() + 1);
  std::memcpy(key, psk->key.data(), psk->key.size());
  return static_cast<unsigned int>(psk->key.size());
}

// The reason of OpenSSL's last error ("tlsv1 alert protocol version"), for messages.
std::string openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) return "unknown OpenSSL error";
  if (const char* reason = ERR_reason_error_string(e)) return reason;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool is_ip_literal(const std::string& host) {
  unsigned char addr[16];
  return inet_pton(AF_INET, host.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, host.c_str(), addr) == 1;
}

// What start_tls will trust, validated; nothing loaded into OpenSSL yet.
struct Trust {
  std::string label;
  std::string ca_key;
  PinCheck pin;
  std::string ca_file;
  PskEntry psk;
  bool has_psk = false;
};

// Pins take precedence over the CA bundle (a pin replaces chain and name checks). A PSK, when
// configured, is offered besides either: a server that accepts it presents no certificate, and
// one that answers with a certificate still meets the pin or the CA bundle (or, with a PSK only,
// is refused).
Result<Trust> resolve_trust(const TlsOptions& options) {
  Trust trust;
  trust.label = options.label;
  trust.ca_key = options.ca_key;
  for (const std::string& text : options.thumbprints) {
    if (text.empty()) continue;  // an unset source (the simulator's empty sslThumbprint)
    auto hex = normalize_thumbprint(text);
    if (!hex.ok()) return fail(VIX_E_INVALID_ARG, options.label + ": " + hex.error().message);
    if (std::find(trust.pin.expected.begin(), trust.pin.expected.end(), *hex) !=
        trust.pin.expected.end()) {
      continue;
    }
    if (!trust.pin.display.empty()) trust.pin.display += " or ";
    trust.pin.display += display_thumbprint(*hex);
    trust.pin.expected.push_back(std::move(*hex));
  }
  trust.ca_file = options.ca_file;
  if (!options.psk_file.empty()) {
    VIX_ASSIGN_OR_RETURN(trust.psk, read_psk_file(options.psk_file));
    trust.has_psk = true;
  }
  if (trust.pin.expected.empty() && trust.ca_file.empty() && !trust.has_psk) {
    std::string psk_hint =
        options.psk_key.empty() ? "" : " (or " + options.psk_key + " for a pre-shared key)";
    return fail(VIX_E_INVALID_ARG,
                options.label + ": nothing to verify the server's certificate against: set " +
                    options.thumbprint_key + " or " + options.ca_key + psk_hint);
  }
  return trust;
}

int64_t ms_between(Clock::time_point from, Deadline to) {
  if (to <= from) return 0;
  return std::chrono::ceil<milliseconds>(to - from).count();
}

// --- The stream ----------------------------------------------------------------------------------

class TlsStream final : public Stream {
 public:
  TlsStream(int fd, std::string peer, Trust trust)
      : fd_(fd), peer_(std::move(peer)), trust_(std::move(trust)) {}

  ~TlsStream() override {
    if (ssl_ != nullptr) {
      // A polite close_notify when the session is healthy; never waits for the answer.
      if (established_ && !fatal_ && !shut_.load()) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
      }
      SSL_free(ssl_);  // frees the BIO too
    }
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
    ERR_clear_error();
  }

  Result<void> handshake(const std::string& server_name, Deadline deadline);

  Result<void> read_exact(void* buf, size_t len, Deadline deadline) override {
    auto started = Clock::now();
    auto* p = static_cast<uint8_t*>(buf);
    size_t done = 0;
    while (done < len) {
      size_t n = 0;
      Step step = call([&] { return SSL_read_ex(ssl_, p + done, len - done, &n); });
      if (step.failed) return lost("TLS read: " + step.why);
      if (step.want == 0) {
        done += n;
        continue;
      }
      VIX_TRY(wait(step.want, deadline, started, "read"));
    }
    return ok();
  }

  Result<void> write_all(const void* buf, size_t len, Deadline deadline) override {
    auto started = Clock::now();
    auto* p = static_cast<const uint8_t*>(buf);
    size_t done = 0;
    while (done < len) {
      size_t n = 0;
      Step step = call([&] { return SSL_write_ex(ssl_, p + done, len - done, &n); });
      if (step.failed) return lost("TLS write: " + step.why);
      if (step.want == 0) {
        done += n;
        continue;
      }
      VIX_TRY(wait(step.want, deadline, started, "write"));
    }
    return ok();
  }

  void shutdown() override {
    if (shut_.exchange(true)) return;
    // Wakes a poll() in another thread at once (POLLHUP); the fd stays open until destruction
    // so its number is never reused under a concurrent reader.
    ::shutdown(fd_, SHUT_RDWR);
  }

  const std::string& peer() const override { return peer_; }
  int fd() const override { return fd_; }
  // Drops the session without a close_notify (the peer does the same) and hands the socket
  // over; a later read or write of this stream fails as shut down.
  int release_fd() override {
    std::lock_guard lock(mu_);
    if (fd_ < 0) return -1;
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    fatal_ = true;
    shut_.store(true);
    return std::exchange(fd_, -1);
  }

 private:
  // One SSL call's outcome: done (want 0), wait for the socket (POLLIN / POLLOUT), or failed.
  struct Step {
    short want = 0;
    bool failed = false;
    bool closed = false;  // the peer went away (or shutdown()) rather than TLS refusing
    std::string why;
  };

  template <class F>
  Step call(F&& ssl_call) {
    Step step;
    auto failed = [&](bool closed, std::string why) {
      step.failed = true;
      step.closed = closed;
      step.why = std::move(why);
      return step;
    };
    if (shut_.load()) return failed(true, "the connection was shut down");
    std::lock_guard lock(mu_);
    if (fatal_) return failed(true, "the TLS session failed earlier");
    ERR_clear_error();
    errno = 0;
    int r = ssl_call();
    int saved_errno = errno;
    if (r == 1) return step;
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) {
      step.want = POLLIN;
      return step;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      step.want = POLLOUT;
      return step;
    }
    fatal_ = true;
    bool eof = err == SSL_ERROR_SSL &&
               ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    std::string reason = openssl_reason();
    ERR_clear_error();
    if (shut_.load()) return failed(true, "the connection was shut down");
    if (err == SSL_ERROR_ZERO_RETURN) return failed(true, "the server closed the TLS session");
    if (err == SSL_ERROR_SYSCALL) {
      return failed(true, saved_errno != 0 ? std::string("socket: ") + std::strerror(saved_errno)
                                           : "the server closed the connection");
    }
    if (eof) return failed(true, "the server closed the connection");
    return failed(false, reason);
  }

  Result<void> wait(short events, Deadline deadline, Clock::time_point started, const char* what) {
    for (;;) {
      if (shut_.load()) return lost(std::string(what) + ": the connection was shut down");
      int timeout = -1;
      if (deadline != kNoDeadline) {
        auto now = Clock::now();
        if (now >= deadline) {
          return fail(VIX_E_HOST_TCP_SOCKET_ERROR,
                      who() + ": TLS " + what + " timed out after " +
                          std::to_string(ms_between(started, deadline)) + " ms");
        }
        timeout = int(
            std::min<int64_t>(std::chrono::ceil<milliseconds>(deadline - now).count(), INT_MAX));
      }
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, timeout);
      if (r > 0) return ok();  // readiness, hang-up or error: the next SSL call tells which
      if (r < 0 && errno != EINTR) {
        return fail(VIX_E_HOST_TCP_SOCKET_ERROR, who() + ": poll: " + std::strerror(errno));
      }
    }
  }

  std::string who() const { return trust_.label + " " + peer_; }
  Error lost(const std::string& why) const {
    return fail(VIX_E_HOST_TCP_CONN_LOST, who() + ": " + why);
  }
  Error handshake_error(const Step& step) const;

  int fd_;  // -1 once released
  const std::string peer_;
  Trust trust_;  // the verify and PSK callbacks point into it: it lives as long as ssl_
  bool cert_refused_ = false;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::mutex mu_;
  bool fatal_ = false;  // under mu_
  bool established_ = false;
  std::atomic<bool> shut_{false};
};

Result<void> TlsStream::handshake(const std::string& server_name_in, Deadline deadline) {
  auto setup_error = [&](const std::string& what) {
    return fail(VIX_E_FAIL, who() + ": " + what + ": " + openssl_reason());
  };
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) return setup_error("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);

  // Brackets from "[::1]" are not part of the name the certificate carries.
  std::string server_name = server_name_in;
  if (server_name.size() > 2 && server_name.front() == '[' && server_name.back() == ']') {
    server_name = server_name.substr(1, server_name.size() - 2);
  }

  if (!trust_.pin.expected.empty()) {
    SSL_CTX_set_cert_verify_callback(ctx_, pin_verify, &trust_.pin);
  } else if (!trust_.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, trust_.ca_file.c_str(), nullptr) != 1) {
      return fail(VIX_E_INVALID_ARG, trust_.label + ": " + trust_.ca_key + " " + trust_.ca_file +
                                         ": cannot load the CA bundle: " + openssl_reason());
    }
  } else {
    SSL_CTX_set_cert_verify_callback(ctx_, refuse_certificate, &cert_refused_);
  }

  ssl_ = SSL_new(ctx_);
  if (ssl_ == nullptr) return setup_error("SSL_new");
  const BIO_METHOD* method = socket_method();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (bio == nullptr) return setup_error("BIO_new");
  BIO_set_data(bio, reinterpret_cast<void*>(intptr_t(fd_)));
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);

  // Without a server name (a Unix socket: the peer is local) the chain alone is checked.
  if (trust_.pin.expected.empty() && !trust_.ca_file.empty() && !server_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int set = is_ip_literal(server_name)
                  ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str())
                  : X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0);
    if (set != 1) return setup_error("server name " + server_name);
  }
  // SNI carries host names only (RFC 6066 excludes address literals).
  if (!server_name.empty() && !is_ip_literal(server_name)) {
    SSL_set_tlsext_host_name(ssl_, server_name.c_str());
  }
  if (trust_.has_psk) {
    SSL_set_app_data(ssl_, &trust_.psk);
    // Also serves TLS 1.3 (an external PSK with SHA-256), which is what gnutls servers offer.
    SSL_set_psk_client_callback(ssl_, psk_client);
  }

  auto started = Clock::now();
  for (;;) {
    Step step = call([&] { return SSL_connect(ssl_); });
    if (step.failed) return handshake_error(step);
    if (step.want == 0) break;
    VIX_TRY(wait(step.want, deadline, started, "handshake"));
  }
  established_ = true;
  return ok();
}

Error TlsStream::handshake_error(const Step& step) const {
  if (trust_.pin.mismatch) {
    return thumbprint_mismatch(who(), trust_.pin.presented, trust_.pin.display);
  }
  if (cert_refused_) {
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                who() +
                    ": the server presented a certificate, but only a pre-shared key "
                    "(vixfs.nbd.pskFile) is configured: set vixfs.nbd.thumbprint or "
                    "vixfs.nbd.caFile to accept it");
  }
  long verify = ssl_ != nullptr ? SSL_get_verify_result(ssl_) : X509_V_OK;
  if (verify != X509_V_OK) {
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                who() + ": TLS certificate verification against " + trust_.ca_key + " " +
                    trust_.ca_file + " failed: " + X509_verify_cert_error_string(verify));
  }
  // A failure the peer caused by closing stays "connection lost"; the rest is a refusal.
  return fail(step.closed ? VIX_E_HOST_TCP_CONN_LOST : VIX_E_CANNOT_CONNECT_TO_HOST,
              who() + ": TLS handshake failed: " + step.why);
}

}  // namespace

Result<void> check_tls_options(const TlsOptions& options) {
  VIX_TRY(resolve_trust(options));
  return ok();
}

Result<std::unique_ptr<Stream>> start_tls(std::unique_ptr<Stream> plain, const TlsOptions& options,
                                          Deadline deadline) {
  if (!plain) return fail(VIX_E_INVALID_ARG, options.label + ": no connection to upgrade to TLS");
  VIX_ASSIGN_OR_RETURN(Trust trust, resolve_trust(options));
  std::string peer = plain->peer();
  int fd = plain->release_fd();
  plain.reset();
  if (fd < 0)
    return fail(VIX_E_INVALID_ARG, options.label + " " + peer + ": the connection has no socket");
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    int err = errno;
    ::close(fd);
    return fail(VIX_E_HOST_TCP_SOCKET_ERROR,
                options.label + " " + peer + ": fcntl: " + std::strerror(err));
  }
  auto stream = std::make_unique<TlsStream>(fd, peer, std::move(trust));
  VIX_TRY(stream->handshake(options.server_name, deadline));
  return std::unique_ptr<Stream>(std::move(stream));
}

}  // namespace vix::net
