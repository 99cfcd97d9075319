// Internal to src/nbd: what one Connection shares between the threads that send requests
// (connection.cc) and the one thread that reads replies (reply_reader.cc).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "nbd/connection.h"
#include "nbd/handshake.h"

namespace vix::nbd {

// One request on the wire, at most max_request bytes.
struct Request {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint64_t cookie = 0;  // 0 until registered
  uint64_t offset = 0;
  uint32_t length = 0;
  uint8_t* read_buf = nullptr;         // READ: the caller's bytes for [offset, offset+length)
  const uint8_t* write_buf = nullptr;  // WRITE: the payload

  // Reader-thread state, read by the caller only once done.
  bool structured = false;
  std::map<uint64_t, uint64_t> covered;  // start -> end, merged, of data and hole chunks
  uint64_t covered_bytes = 0;
  bool have_status = false;
  std::vector<StatusExtent> extents;

  // Completion, under Impl::mu_. A request is done exactly once, by the reader: when its reply
  // is complete, or when the reader gives up on the connection.
  bool done = false;
  bool failed = false;
  Error error;
};

class Connection::Impl {
 public:
  Impl(Negotiated n, const std::string& export_name);
  ~Impl();  // NBD_CMD_DISC when healthy, then shutdown and join
  void start();

  const ExportInfo& info() const { return info_; }
  bool broken() const { return broken_.load(); }
  const std::string& peer() const { return peer_; }
  const std::string& prefix() const { return prefix_; }

  void set_max_request(uint32_t bytes);
  // Out of range: VIX_E_DISK_OUTOFRANGE; not aligned to min_block: VIX_E_INVALID_ARG.
  Result<void> check_range(const char* what, uint64_t offset, uint64_t length) const;
  // [offset, offset+length) as requests of at most max_request bytes, a window of them in flight.
  Result<void> run(uint16_t type, uint16_t flags, uint64_t offset, uint64_t length,
                   uint8_t* read_buf, const uint8_t* write_buf, int64_t timeout_ms);
  // One request on its own (flush, block status).
  Result<void> run_one(const std::shared_ptr<Request>& r, int64_t timeout_ms);

 private:
  // Sending side (connection.cc).
  Result<void> submit(const std::vector<std::shared_ptr<Request>>& batch, int64_t timeout_ms);
  Result<void> wait(Request& r, int64_t timeout_ms);
  void break_connection(const std::string& reason);
  std::string describe(const Request& r) const;
  Error lost_error() const;

  // Reading side (reply_reader.cc).
  void reader_loop();
  Result<void> read_one_reply();
  Result<void> read_chunk(Request& r, uint16_t flags, uint16_t type, uint32_t len);
  Result<void> finish_structured(Request& r);
  Result<void> cover(Request& r, uint64_t off, uint64_t len);
  Result<void> in_request(const Request& r, uint64_t off, uint64_t len, const char* what) const;
  std::shared_ptr<Request> find(uint64_t cookie);
  void complete(Request& r);
  Error server_error(const Request& r, uint32_t err, const std::string& msg) const;
  Result<void> read(void* buf, size_t len);

  std::unique_ptr<Stream> stream_;
  ExportInfo info_;
  uint32_t meta_id_ = 0;
  std::string peer_, prefix_;
  std::atomic<uint32_t> max_request_{0};

  std::mutex mu_;  // pending_, next_cookie_, broken_reason_, every Request's completion
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::shared_ptr<Request>> pending_;
  uint64_t next_cookie_ = 1;
  std::atomic<bool> broken_{false};
  std::string broken_reason_;
  std::mutex write_mu_;  // one request's bytes at a time on the stream
  std::thread reader_;
};

}  // namespace vix::nbd
