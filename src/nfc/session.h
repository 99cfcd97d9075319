// One NFC connection with one disk open on it (docs/reference/nfc.md §2-§3): the classic
// 264-byte handshake, the AIO session, OPEN_FILE, then reads and writes with several requests in
// flight, matched to replies by opId. A read's fragments may arrive in any order; each is placed
// at its offset, and one that passes the request's end or covers bytes already received ends the
// session (the request never returns wrong bytes).
//
// Thread-safe: any number of threads may start and wait for requests at once. One reader thread
// takes replies off the stream. Errors:
//   an error reply (type 1) to a request   -> that request fails with the server's text; the
//                                             session goes on (allocation errors:
//                                             VIX_E_OUT_OF_MEMORY)
//   the connection lost, a reply timed out -> VIX_E_HOST_TCP_CONN_LOST / _SOCKET_ERROR; every
//                                             request in flight fails; the owner reconnects
//   a reply that breaks the protocol       -> VIX_E_FAIL naming the field; every request in flight
//                                             fails; the owner reconnects for later requests
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "net/stream.h"
#include "nfc/protocol.h"

namespace vix::nfc {

struct SessionOptions {
  std::string path;  // the datastore path: "[datastore1] vm/vm-000002.vmdk"
  bool read_only = true;
  // OPEN_SESSION's buffer size: 0 leaves the server's default (64 KiB), as VDDK does. Write
  // fragments are at most this long.
  uint32_t buffer_size = 0;
  std::string where;  // how messages name the connection: "NFC 127.0.0.1:902"
  net::Deadline deadline = net::kNoDeadline;  // the whole open
};

class Session {
 public:
  using OpId = uint32_t;

  // Runs the handshake and opens the file on `stream` (from authd_connect).
  static Result<std::unique_ptr<Session>> open(std::unique_ptr<net::Stream> stream,
                                               const SessionOptions& options);
  // Fails what is in flight and stops the reader; a polite close is close().
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  uint64_t capacity_bytes() const { return file_.capacity_bytes; }
  uint32_t server_version() const { return server_version_; }
  const std::string& where() const { return where_; }

  // Starts a read of [offset, offset + len) into buf, asking for `compression` (the server may
  // answer without). buf must stay valid until wait() for this id returns, whatever it returns.
  Result<OpId> start_read(uint64_t offset, uint32_t len, void* buf, uint32_t compression,
                          net::Deadline deadline);
  // Sends a whole write, cut into fragments of the session's buffer size.
  Result<OpId> start_write(uint64_t offset, uint32_t len, const void* buf, net::Deadline deadline);
  // Waits for a started request. Past the deadline the session breaks (a late reply could not be
  // told apart from the next request's) and the request fails as timed out.
  Result<void> wait(OpId id, net::Deadline deadline);

  // The allocation bitmap of `count` chunks of `chunk` bytes from `start` (chunk-aligned): one bit
  // per chunk, least significant first.
  Result<std::vector<uint8_t>> query_allocated(uint64_t start, uint64_t chunk, uint64_t count,
                                               net::Deadline deadline);
  // A descriptor value (key without "ddb."); "" when the disk has none.
  Result<std::string> ddb_get(const std::string& key, net::Deadline deadline);

  // CLOSE_FILE, CLOSE_SESSION and SESSION_COMPLETE; the session is unusable afterwards.
  Result<void> close(net::Deadline deadline);
  // True once the session broke (connection lost, timeout, protocol violation) or was closed.
  bool broken() const;
  // Makes every request in flight and every later one fail at once.
  void shutdown();

 private:
  struct Pending {
    uint32_t type = 0;
    uint8_t* buf = nullptr;  // reads
    uint64_t offset = 0;
    uint32_t len = 0;
    uint32_t received = 0;
    std::map<uint32_t, uint32_t> pieces;  // fragment offset -> length, to refuse overlaps
    size_t extra_expected = 0;            // QUERY_ALLOCATED_BLOCKS: the bitmap's bytes
    std::vector<uint8_t> reply;           // non-IO replies: payload (and extra)
    bool done = false;
    bool busy = false;  // the reader is writing into buf
    std::optional<Error> error;
  };

  Session(std::unique_ptr<net::Stream> stream, std::string where);
  Result<void> handshake(const SessionOptions& options);
  // Synchronous request/reply before the reader runs.
  Result<std::vector<uint8_t>> exchange(uint32_t type, const std::vector<uint8_t>& payload,
                                        const std::string& extra, net::Deadline deadline);
  // A request in flight from now on (a broken session takes none).
  Result<OpId> enlist(std::shared_ptr<Pending> pending);
  // One frame: header, payload (h.size bytes) and what follows it; the caller holds write_mu_.
  // A failure breaks the session.
  Result<void> send_frame(const Header& h, const uint8_t* payload, const void* extra,
                          size_t extra_len, net::Deadline deadline);
  Result<OpId> start(uint32_t type, std::shared_ptr<Pending> pending,
                     const std::vector<uint8_t>& payload, const std::string& extra,
                     net::Deadline deadline);
  Result<std::vector<uint8_t>> call(uint32_t type, const std::vector<uint8_t>& payload,
                                    const std::string& extra, size_t extra_expected,
                                    net::Deadline deadline);
  void reader_loop();
  Result<void> read_reply(const Header& h);
  Result<void> read_fragment(const Header& h, const std::shared_ptr<Pending>& p);
  void break_session(const Error& why);
  Error protocol_error(const std::string& why) const;

  std::unique_ptr<net::Stream> stream_;
  const std::string where_;
  OpenFileReply file_;
  uint32_t server_version_ = 0;
  uint32_t fragment_size_ = 64 * 1024;

  std::mutex write_mu_;  // one frame (or one write's fragments) at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<OpId, std::shared_ptr<Pending>> pending_;  // under mu_
  OpId next_op_ = 0;                                            // under mu_
  bool broken_ = false;                                         // under mu_
  bool closing_ = false;                                        // under mu_
  std::optional<Error> broken_error_;                           // under mu_
  std::vector<uint8_t> scratch_;  // the reader's: compressed fragments
  std::thread reader_;
};

}  // namespace vix::nfc
