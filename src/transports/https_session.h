// The request engine of the https transport (internal to src/transports): one Session per opened
// disk (shared by the byte sources of its files) runs range and HEAD requests over pooled libcurl
// handles, several in flight, within the per-host budget shared by every Session of the process.
// It retries a dropped connection once, renews a refused session cookie or host ticket, and
// answers 503/429 with back-off; every lie of the server is an error, never bytes.
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "transports/https.h"
#include "vsphere/tls.h"

namespace vix::https_detail {

// One range request: the body goes straight into the caller's buffer, never past `want`.
struct Request {
  std::string url;
  uint64_t off = 0;
  size_t want = 0;  // 0 with head = HEAD
  uint8_t* dst = nullptr;
  size_t got = 0;
  bool overflow = false;
  bool ignored_range = false;  // a 200 (the whole file) to a partial range: stop reading it
  bool head = false;
  std::string content_range;
  long retry_after_s = -1;  // Retry-After of the answer, -1 when absent
  std::string error_body;   // the start of a non-2xx body, for the message
  int attempts = 0;
  bool renewed = false;       // the session cookie was renewed once for this request
  int ticket_renewals = 0;    // host tickets asked again for this request
  bool fresh_ticket = false;  // `ticket` is one this request asked for
  std::string ticket;         // the host ticket sent (host path only)
  int throttled = 0;          // 503/429 answers so far
  std::chrono::steady_clock::time_point first_try{}, not_before{};
  uint64_t total = 0;              // the file size the answer must state (0 for HEAD)
  curl_off_t content_length = -1;  // of a HEAD answer
};

struct Handle {
  CURL* h = nullptr;
  vsphere::PeerCheck pin;
  char errbuf[CURL_ERROR_SIZE] = {0};
  Request* req = nullptr;
  uint64_t cookie_generation = ~uint64_t{0};  // of the session cookie set on h
  ~Handle() {
    if (h) curl_easy_cleanup(h);
  }
};

class HostBudget;

class Session {
 public:
  static Result<std::shared_ptr<Session>> make(const HttpsOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const HttpsOptions& options() const { return opt_; }
  std::string url(const std::string& datastore, const std::string& path) const;
  // Runs the requests, up to `connections` at a time within the host's budget.
  Result<void> run(std::vector<Request>& reqs);

  uint64_t throttled() const { return throttled_.load(); }
  uint64_t ticket_renewals() const { return ticket_renewals_.load(); }

 private:
  Session() = default;
  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* arg);
  static void unlock(CURL*, curl_lock_data data, void* arg);
  Result<std::unique_ptr<Handle>> acquire();
  void release(std::unique_ptr<Handle> h);
  Result<void> ensure_ticket(Request& r);
  void prepare(Handle& hd, Request& r);
  Result<bool> finish(Handle& hd, Request& r, CURLcode rc);
  Result<bool> throttle(Request& r, long status);
  Result<void> renew_cookie(uint64_t rejected_generation);
  Result<void> run_serial(Handle& hd, std::vector<Request>& reqs);
  Result<void> run_multi(std::vector<std::unique_ptr<Handle>>& handles, std::vector<Request>& reqs);

  static constexpr int kLocks = CURL_LOCK_DATA_LAST;
  HttpsOptions opt_;
  std::string pin_;
  std::shared_ptr<HostBudget> budget_;
  CURLSH* share_ = nullptr;
  std::mutex locks_[kLocks];
  std::mutex pool_mu_;
  std::mutex renew_mu_;   // one renewal at a time
  std::mutex cookie_mu_;  // guards opt_.cookie, cookie_generation_ and tickets_
  uint64_t cookie_generation_ = 0;
  std::vector<std::pair<std::string, std::string>> tickets_;  // url -> host ticket
  std::vector<std::unique_ptr<Handle>> idle_;
  std::atomic<uint64_t> throttled_{0}, ticket_renewals_{0};
};

// "host:port" of a URL (the key of its budget).
std::string url_authority(const std::string& url);

}  // namespace vix::https_detail
