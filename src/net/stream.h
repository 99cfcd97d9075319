// A byte stream to a server: TCP or a Unix socket, optionally upgraded to TLS (net/tls.h).
// An NBD or NFC connection runs one reader thread and serialised writers on one stream at the same
// time, so an implementation must allow one read_exact and one write_all to run concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace vix::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
constexpr Deadline kNoDeadline = Deadline::max();

// timeout_ms 0 means no deadline (VDDK's meaning of 0 for its nfc timeouts).
Deadline deadline_after_ms(int64_t timeout_ms);

class Stream {
 public:
  virtual ~Stream() = default;
  // Reads exactly len bytes. Fails with VIX_E_HOST_TCP_SOCKET_ERROR ("timed out after N ms")
  // past the deadline, VIX_E_HOST_TCP_CONN_LOST when the peer closes or after shutdown().
  virtual Result<void> read_exact(void* buf, size_t len, Deadline deadline) = 0;
  virtual Result<void> write_all(const void* buf, size_t len, Deadline deadline) = 0;
  // Makes every blocked and later read/write fail at once. Idempotent, safe from any thread.
  virtual void shutdown() = 0;
  // "127.0.0.1:10809" or "unix:/path", for messages.
  virtual const std::string& peer() const = 0;
  // The socket, for the TLS upgrade; -1 once the stream has handed it over.
  virtual int fd() const = 0;
  // Releases the socket to a new owner (the TLS stream) without closing it.
  virtual int release_fd() = 0;
};

// Where an NBD server listens: "HOST:PORT", "[v6]:PORT", "HOST" (port default_port), or an
// absolute Unix socket path ("/run/nbd.sock" or "unix:/run/nbd.sock").
struct Endpoint {
  std::string host;  // empty for a Unix socket
  uint16_t port = 0;
  std::string unix_path;
  std::string display() const;
};
Result<Endpoint> parse_endpoint(const std::string& text, uint16_t default_port);

// A stream over a connected socket someone handed over (a TLS stream's release_fd()).
std::unique_ptr<Stream> adopt_socket(int fd, std::string peer);

// Connects (TCP_NODELAY, close-on-exec). Failures name the endpoint and the errno text.
Result<std::unique_ptr<Stream>> connect_stream(const Endpoint& endpoint, Deadline deadline);

}  // namespace vix::net
