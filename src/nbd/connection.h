// One NBD client connection (fixed newstyle), written against the protocol (NBD's doc/proto.md):
// handshake with NBD_OPT_GO (NBD_OPT_EXPORT_NAME only for servers that answer ERR_UNSUP),
// optional STARTTLS first, structured replies and the base:allocation meta context when offered,
// then many requests in flight, matched to replies by cookie, replies in any order.
//
// Thread-safe: any number of threads may call the I/O methods at once. A reply that breaks the
// protocol (bad magic, unknown cookie, oversized or out-of-range chunk, short data) or a request
// past its timeout marks the connection broken: every request in flight fails with
// VIX_E_HOST_TCP_CONN_LOST-class errors and the owner reconnects. Nothing is ever returned short.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "net/stream.h"

namespace vix::nbd {

// NBD runs over the shared byte streams of src/net.
using net::Clock;
using net::Deadline;
using net::deadline_after_ms;
using net::Endpoint;
using net::kNoDeadline;
using net::Stream;

struct HandshakeOptions {
  std::string export_name;
  // Negotiate structured replies and "base:allocation" (block_status needs both).
  bool want_allocation = true;
  // nbdssl: send NBD_OPT_STARTTLS first and continue over the stream this returns. A server that
  // refuses STARTTLS is an error: the handshake never continues in plain text.
  std::function<Result<std::unique_ptr<Stream>>(std::unique_ptr<Stream>)> start_tls;
  Deadline deadline = kNoDeadline;  // connect + handshake (vixDiskLib.nfc.AcceptTimeoutMs)
};

struct ExportInfo {
  uint64_t size = 0;
  uint16_t transmission_flags = 0;                                        // NBD_FLAG_*
  uint32_t min_block = 1, preferred_block = 4096, max_block = 32u << 20;  // NBD_INFO_BLOCK_SIZE
  bool structured_replies = false;
  bool base_allocation = false;  // block_status() is available
  bool read_only() const;
  bool can_multi_conn() const;
  bool can_flush() const;
  bool can_fua() const;
  bool can_trim() const;
  bool can_write_zeroes() const;
};

// One block-status extent (base:allocation): flags NBD_STATE_HOLE (1) / NBD_STATE_ZERO (2).
struct StatusExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t flags = 0;
};

class Connection {
 public:
  // Runs the handshake over `stream`, then starts the reply reader.
  static Result<std::unique_ptr<Connection>> handshake(std::unique_ptr<Stream> stream,
                                                       const HandshakeOptions& options);
  ~Connection();  // sends NBD_CMD_DISC when healthy, stops the reader, fails what is in flight

  const ExportInfo& info() const;
  bool broken() const;
  const std::string& peer() const;

  // Each call may span any length: it is split into requests of at most max_request bytes
  // (itself capped at the server's max_block), all sent before the first reply is awaited.
  // timeout_ms bounds the wait for every reply (0: none); past it the connection breaks.
  Result<void> read(uint64_t offset, uint64_t length, uint8_t* buf, int64_t timeout_ms);
  Result<void> write(uint64_t offset, uint64_t length, const uint8_t* buf, bool fua,
                     int64_t timeout_ms);
  Result<void> flush(int64_t timeout_ms);
  Result<void> trim(uint64_t offset, uint64_t length, int64_t timeout_ms);
  Result<void> write_zeroes(uint64_t offset, uint64_t length, bool may_trim, int64_t timeout_ms);
  // Extents covering a prefix of [offset, offset+length) (servers may answer less than asked;
  // call again from the end of the last extent). Needs info().base_allocation.
  Result<std::vector<StatusExtent>> block_status(uint64_t offset, uint64_t length,
                                                 int64_t timeout_ms);

  void set_max_request(uint32_t bytes);  // vixfs.nbd.maxRequestKB, capped at max_block

  class Impl;

 private:
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vix::nbd
