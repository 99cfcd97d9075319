// Stream over a TCP or Unix socket: non-blocking fd, poll() against the caller's deadline, so a
// silent server costs a timeout rather than a hung thread. shutdown() uses ::shutdown(SHUT_RDWR),
// which wakes a reader blocked in poll() at once; the fd itself is closed only by the destructor
// so a concurrent reader never sees its number reused.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>

#include "net/stream.h"

namespace vix::net {

Deadline deadline_after_ms(int64_t timeout_ms) {
  if (timeout_ms <= 0) return kNoDeadline;
  // Anything beyond a year is "no deadline" in practice and keeps the addition from overflowing.
  if (timeout_ms > int64_t(365) * 24 * 3600 * 1000) return kNoDeadline;
  return Clock::now() + std::chrono::milliseconds(timeout_ms);
}

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

// Milliseconds for poll(): -1 without a deadline, 0 once it has passed.
int poll_timeout(Deadline deadline) {
  if (deadline == kNoDeadline) return -1;
  auto now = Clock::now();
  if (now >= deadline) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return int(std::min<int64_t>(ms, std::numeric_limits<int>::max()));
}

// Waits until fd is ready for `events`; an error names the peer.
Result<void> wait_fd(int fd, short events, Deadline deadline, const std::string& peer,
                     const std::atomic<bool>& shut) {
  for (;;) {
    if (shut.load()) return fail(VIX_E_HOST_TCP_CONN_LOST, peer + ": connection shut down");
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, poll_timeout(deadline));
    if (r > 0) return ok();
    if (r == 0) {
      return fail(VIX_E_HOST_TCP_SOCKET_ERROR, peer + ": timed out waiting for the server");
    }
    if (errno != EINTR) {
      return fail(VIX_E_HOST_TCP_SOCKET_ERROR, peer + ": poll: " + errno_text(errno));
    }
  }
}

class SocketStream final : public Stream {
 public:
  SocketStream(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  ~SocketStream() override {
    int fd = fd_.exchange(-1);
    if (fd >= 0) ::close(fd);
  }

  Result<void> read_exact(void* buf, size_t len, Deadline deadline) override {
    auto* p = static_cast<uint8_t*>(buf);
    while (len > 0) {
      int fd = fd_.load();
      if (fd < 0 || shut_.load()) return lost("connection shut down");
      ssize_t n = ::recv(fd, p, len, 0);
      if (n > 0) {
        p += n;
        len -= size_t(n);
        continue;
      }
      if (n == 0) {
        return lost(shut_.load() ? "connection shut down" : "server closed the connection");
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        VIX_TRY(wait_fd(fd, POLLIN, deadline, peer_, shut_));
        continue;
      }
      return lost("recv: " + errno_text(errno));
    }
    return ok();
  }

  Result<void> write_all(const void* buf, size_t len, Deadline deadline) override {
    auto* p = static_cast<const uint8_t*>(buf);
    while (len > 0) {
      int fd = fd_.load();
      if (fd < 0 || shut_.load()) return lost("connection shut down");
      ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
      if (n > 0) {
        p += n;
        len -= size_t(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        VIX_TRY(wait_fd(fd, POLLOUT, deadline, peer_, shut_));
        continue;
      }
      return lost("send: " + errno_text(n < 0 ? errno : EPIPE));
    }
    return ok();
  }

  void shutdown() override {
    if (shut_.exchange(true)) return;
    int fd = fd_.load();
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }

  const std::string& peer() const override { return peer_; }
  int fd() const override { return fd_.load(); }
  int release_fd() override { return fd_.exchange(-1); }

 private:
  Error lost(const std::string& why) const {
    return fail(VIX_E_HOST_TCP_CONN_LOST, peer_ + ": " + why);
  }

  std::atomic<int> fd_;
  std::atomic<bool> shut_{false};
  std::string peer_;
};

}  // namespace

std::unique_ptr<Stream> adopt_socket(int fd, std::string peer) {
  return std::make_unique<SocketStream>(fd, std::move(peer));
}

namespace {

bool parse_port(const std::string& s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + unsigned(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = uint16_t(v);
  return true;
}

// connect() on a non-blocking socket, finished by poll() within the deadline.
Result<void> connect_fd(int fd, const sockaddr* addr, socklen_t len, Deadline deadline,
                        const std::string& peer) {
  if (::connect(fd, addr, len) == 0) return ok();
  if (errno != EINPROGRESS && errno != EINTR) {
    int err = errno;
    VixError code = err == ECONNREFUSED || err == ENOENT ? VIX_E_HOST_NETWORK_CONN_REFUSED
                                                         : VIX_E_CANNOT_CONNECT_TO_HOST;
    return fail(code, peer + ": connect: " + errno_text(err));
  }
  std::atomic<bool> never{false};
  auto waited = wait_fd(fd, POLLOUT, deadline, peer, never);
  if (!waited.ok()) {
    return fail(VIX_E_HOST_TCP_SOCKET_ERROR, peer + ": connect timed out");
  }
  int err = 0;
  socklen_t elen = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = errno;
  if (err != 0) {
    VixError code =
        err == ECONNREFUSED ? VIX_E_HOST_NETWORK_CONN_REFUSED : VIX_E_CANNOT_CONNECT_TO_HOST;
    return fail(code, peer + ": connect: " + errno_text(err));
  }
  return ok();
}

Result<std::unique_ptr<Stream>> connect_unix(const Endpoint& ep, Deadline deadline) {
  std::string peer = ep.display();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (ep.unix_path.size() >= sizeof addr.sun_path) {
    return fail(VIX_E_INVALID_ARG, peer + ": Unix socket path too long");
  }
  std::memcpy(addr.sun_path, ep.unix_path.data(), ep.unix_path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return fail(VIX_E_HOST_SOCKET_CREATION_ERROR, peer + ": socket: " + errno_text(errno));
  auto r = connect_fd(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr, deadline, peer);
  if (!r.ok()) {
    ::close(fd);
    return std::move(r).error();
  }
  return std::unique_ptr<Stream>(new SocketStream(fd, peer));
}

Result<std::unique_ptr<Stream>> connect_tcp(const Endpoint& ep, Deadline deadline) {
  std::string peer = ep.display();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  std::string port = std::to_string(ep.port);
  int gai = ::getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &list);
  if (gai != 0 || list == nullptr) {
    return fail(VIX_E_HOST_SERVER_NOT_FOUND, peer + ": " + ::gai_strerror(gai));
  }
  Error last = fail(VIX_E_CANNOT_CONNECT_TO_HOST, peer + ": no address to connect to");
  for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = fail(VIX_E_HOST_SOCKET_CREATION_ERROR, peer + ": socket: " + errno_text(errno));
      continue;
    }
    auto r = connect_fd(fd, a->ai_addr, a->ai_addrlen, deadline, peer);
    if (r.ok()) {
      ::freeaddrinfo(list);
      int one = 1;
      // Requests are small and latency-bound: Nagle would hold each one back.
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return std::unique_ptr<Stream>(new SocketStream(fd, peer));
    }
    ::close(fd);
    last = std::move(r).error();
    if (last.code == VIX_E_HOST_TCP_SOCKET_ERROR) break;  // deadline spent: no point going on
  }
  ::freeaddrinfo(list);
  return last;
}

}  // namespace

std::string Endpoint::display() const {
  if (!unix_path.empty()) return "unix:" + unix_path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> parse_endpoint(const std::string& text, uint16_t default_port) {
  Endpoint ep;
  auto bad = [&](const std::string& why) {
    return fail(VIX_E_INVALID_ARG, "NBD server \"" + text + "\": " + why);
  };
  if (text.empty()) return bad("empty");
  if (text.rfind("unix:", 0) == 0 || text[0] == '/') {
    ep.unix_path = text[0] == '/' ? text : text.substr(5);
    if (ep.unix_path.empty() || ep.unix_path[0] != '/') {
      return bad("a Unix socket path must be absolute");
    }
    if (ep.unix_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return bad("Unix socket path too long");
    }
    return ep;
  }
  ep.port = default_port;
  std::string port;
  if (text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) return bad("missing ']'");
    ep.host = text.substr(1, close - 1);
    std::string rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return bad("expected ':PORT' after ']'");
      port = rest.substr(1);
      if (!parse_port(port, &ep.port)) return bad("bad port \"" + port + "\"");
    }
  } else {
    size_t colon = text.find(':');
    if (colon != std::string::npos && text.find(':', colon + 1) == std::string::npos) {
      ep.host = text.substr(0, colon);
      port = text.substr(colon + 1);
      if (!parse_port(port, &ep.port)) return bad("bad port \"" + port + "\"");
    } else {
      ep.host = text;  // a name, an IPv4 address or a bare IPv6 address (default port)
    }
  }
  if (ep.host.empty()) return bad("empty host name");
  if (ep.port == 0) return bad("no port");
  for (char c : ep.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '[' || c == ']') {
      return bad("bad character in host name");
    }
  }
  return ep;
}

Result<std::unique_ptr<Stream>> connect_stream(const Endpoint& endpoint, Deadline deadline) {
  if (!endpoint.unix_path.empty()) return connect_unix(endpoint, deadline);
  if (endpoint.host.empty() || endpoint.port == 0) {
    return fail(VIX_E_INVALID_ARG, "server: no host or port given");
  }
  return connect_tcp(endpoint, deadline);
}

}  // namespace vix::net
