#include "transports/https_session.h"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <map>
#include <thread>

#include "common/log.h"
#include "common/tls_trust.h"
#include "vsphere/inventory.h"

namespace vix::https_detail {

// Requests in flight to one host:port, shared by every Session of the process: a run takes one
// permit (waiting for it) and then as many more as are free, so that holders never wait on each
// other for a second permit.
class HostBudget {
 public:
  explicit HostBudget(unsigned size) : free_(size) {}
  static std::shared_ptr<HostBudget> of(const std::string& authority, unsigned size) {
    static std::mutex mu;
    static std::map<std::string, std::weak_ptr<HostBudget>> all;
    std::lock_guard lock(mu);
    auto& slot = all[authority];
    if (auto b = slot.lock()) return b;
    auto b = std::make_shared<HostBudget>(size);
    slot = b;
    return b;
  }
  size_t take(size_t want) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return free_ > 0; });
    size_t n = std::min<size_t>(want, free_);
    free_ -= n;
    return n;
  }
  void give(size_t n) {
    {
      std::lock_guard lock(mu_);
      free_ += n;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t free_;
};

namespace {

using Clock = std::chrono::steady_clock;

size_t on_body(char* data, size_t size, size_t n, void* arg) {
  auto* hd = static_cast<Handle*>(arg);
  Request* r = hd->req;
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(hd->h, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200 && status != 206) {
    size_t keep = std::min(len, size_t{256} - std::min(size_t{256}, r->error_body.size()));
    r->error_body.append(data, keep);
    return len;
  }
  if (status == 200 && !(r->off == 0 && r->want == r->total)) {
    r->ignored_range = true;
    return 0;
  }
  if (r->got + len > r->want) {
    r->overflow = true;
    return 0;  // aborts with CURLE_WRITE_ERROR: more bytes than asked for is a lie
  }
  memcpy(r->dst + r->got, data, len);
  r->got += len;
  return len;
}

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// The value of header `name` (lower case, with the colon) in `line`, trimmed; nullopt otherwise.
std::optional<std::string_view> header_value(std::string_view line, std::string_view name) {
  if (line.size() <= name.size()) return std::nullopt;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return std::nullopt;
  }
  std::string_view v = line.substr(name.size());
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
    v.remove_suffix(1);
  return v;
}

size_t on_header(char* data, size_t size, size_t n, void* arg) {
  auto* hd = static_cast<Handle*>(arg);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") {  // a new response
    hd->req->content_range.clear();
    hd->req->retry_after_s = -1;
  }
  if (auto v = header_value(line, "content-range:")) hd->req->content_range = std::string(*v);
  if (auto v = header_value(line, "retry-after:")) {
    uint64_t s = 0;
    // Seconds only; an HTTP date is treated as absent (exponential back-off).
    if (parse_u64(*v, &s)) hd->req->retry_after_s = static_cast<long>(std::min<uint64_t>(s, 3600));
  }
  return size * n;
}

// "bytes a-b/total" exactly.
bool parse_content_range(const std::string& v, uint64_t* a, uint64_t* b, uint64_t* total) {
  std::string_view s(v);
  if (s.substr(0, 6) != "bytes ") return false;
  s.remove_prefix(6);
  size_t dash = s.find('-'), slash = s.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return false;
  return parse_u64(s.substr(0, dash), a) && parse_u64(s.substr(dash + 1, slash - dash - 1), b) &&
         parse_u64(s.substr(slash + 1), total);
}

bool is_drop(CURLcode rc) {
  return rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
         rc == CURLE_PARTIAL_FILE;
}

constexpr int kMaxTicketRenewals = 3;
constexpr long kFirstBackoffMs = 100, kMaxBackoffMs = 5000, kMaxRetryAfterMs = 30000;

}  // namespace

std::string url_authority(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t end = url.find_first_of("/?#", start);
  return url.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

Result<std::shared_ptr<Session>> Session::make(const HttpsOptions& options) {
  std::shared_ptr<Session> s(new Session());
  s->opt_ = options;
  if (s->opt_.connections == 0) s->opt_.connections = 1;
  if (s->opt_.max_request == 0) s->opt_.max_request = HttpsOptions{}.max_request;
  if (!options.tls.thumbprint.empty()) {
    VIX_ASSIGN_OR_RETURN(s->pin_, normalize_thumbprint(options.tls.thumbprint));
  }
  s->budget_ = HostBudget::of(url_authority(options.endpoint), s->opt_.connections);
  s->share_ = curl_share_init();
  if (s->share_ == nullptr) return fail(VIX_E_OUT_OF_MEMORY, "https: curl_share_init failed");
  // Only DNS is shared. A shared connection cache is small (libcurl closes what it cannot
  // keep), and with a request per thread from the cache's prefetchers it closed connections
  // as fast as it opened them: a TLS handshake per 1 MiB request, 26 connects to read 16 MiB.
  // Each pooled handle keeps its own keep-alive connection instead.
  curl_share_setopt(s->share_, CURLSHOPT_LOCKFUNC, &Session::lock);
  curl_share_setopt(s->share_, CURLSHOPT_UNLOCKFUNC, &Session::unlock);
  curl_share_setopt(s->share_, CURLSHOPT_USERDATA, s.get());
  curl_share_setopt(s->share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  return s;
}

Session::~Session() {
  idle_.clear();  // handles first: they reference the share
  if (share_) curl_share_cleanup(share_);
}

std::string Session::url(const std::string& datastore, const std::string& path) const {
  return vsphere::datastore_file_url(opt_.endpoint, opt_.dc_path, datastore, path);
}

Result<void> Session::run(std::vector<Request>& reqs) {
  if (reqs.empty()) return ok();
  for (Request& r : reqs) VIX_TRY(ensure_ticket(r));
  const size_t n = budget_->take(std::min<size_t>(reqs.size(), opt_.connections));
  std::vector<std::unique_ptr<Handle>> handles;
  Result<void> result = ok();
  for (size_t i = 0; i < n && result.ok(); ++i) {
    auto h = acquire();
    if (h.ok()) {
      handles.push_back(std::move(h).value());
    } else {
      result = std::move(h).error();
    }
  }
  if (result.ok()) {
    result = n == 1 ? run_serial(*handles[0], reqs) : run_multi(handles, reqs);
  }
  for (auto& h : handles) release(std::move(h));
  budget_->give(n);
  return result;
}

void Session::lock(CURL*, curl_lock_data data, curl_lock_access, void* arg) {
  static_cast<Session*>(arg)->locks_[data % kLocks].lock();
}
void Session::unlock(CURL*, curl_lock_data data, void* arg) {
  static_cast<Session*>(arg)->locks_[data % kLocks].unlock();
}

Result<std::unique_ptr<Handle>> Session::acquire() {
  {
    std::lock_guard lock(pool_mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  auto hd = std::make_unique<Handle>();
  hd->h = curl_easy_init();
  if (hd->h == nullptr) return fail(VIX_E_OUT_OF_MEMORY, "https: curl_easy_init failed");
  CURL* h = hd->h;
  curl_easy_setopt(h, CURLOPT_SHARE, share_);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opt_.tls.connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opt_.tls.timeout_ms);
  if (opt_.stall_timeout_ms > 0) {
    // Not one byte for that long (a server that accepted and never answers): the request fails
    // rather than waiting for the whole request's limit.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, std::max(1L, (opt_.stall_timeout_ms + 999) / 1000));
  }
  curl_easy_setopt(h, CURLOPT_USERAGENT, "vixfs/" VIXFS_VERSION);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, hd.get());
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, hd.get());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, hd->errbuf);
  hd->pin.expected = pin_;
  VIX_TRY(vsphere::configure_peer_verification(h, &hd->pin, opt_.tls.ca_file));
  return hd;
}

void Session::release(std::unique_ptr<Handle> h) {
  std::lock_guard lock(pool_mu_);
  // Enough for the cache's prefetch threads and FUSE's readers at once: a handle dropped here
  // takes its connection with it.
  if (idle_.size() < std::max<size_t>(2 * opt_.connections, 24)) idle_.push_back(std::move(h));
}

// The host path: the ticket known for the request's URL, else a new one.
Result<void> Session::ensure_ticket(Request& r) {
  if (!opt_.acquire_ticket || !r.ticket.empty()) return ok();
  {
    std::lock_guard lock(cookie_mu_);
    for (const auto& [url, ticket] : tickets_) {
      if (url == r.url) {
        r.ticket = ticket;
        return ok();
      }
    }
  }
  VIX_ASSIGN_OR_RETURN(r.ticket, opt_.acquire_ticket(r.url));
  r.fresh_ticket = true;
  std::lock_guard lock(cookie_mu_);
  tickets_.emplace_back(r.url, r.ticket);
  return ok();
}

void Session::prepare(Handle& hd, Request& r) {
  hd.req = &r;
  hd.pin.mismatch = false;
  hd.errbuf[0] = 0;
  r.got = 0;
  r.overflow = false;
  r.ignored_range = false;
  r.content_range.clear();
  r.retry_after_s = -1;
  r.error_body.clear();
  if (r.attempts == 0 && r.throttled == 0) r.first_try = Clock::now();
  ++r.attempts;
  if (opt_.acquire_ticket) {
    const std::string cookie = "vmware_cgi_ticket=" + r.ticket;
    curl_easy_setopt(hd.h, CURLOPT_COOKIE, cookie.c_str());  // copied by libcurl
    hd.cookie_generation = ~uint64_t{0};
  } else {
    std::lock_guard lock(cookie_mu_);
    if (hd.cookie_generation != cookie_generation_) {
      const std::string cookie = opt_.cookie.empty() ? "" : "vmware_soap_session=" + opt_.cookie;
      curl_easy_setopt(hd.h, CURLOPT_COOKIE, cookie.empty() ? nullptr : cookie.c_str());
      hd.cookie_generation = cookie_generation_;
    }
  }
  curl_easy_setopt(hd.h, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(hd.h, CURLOPT_NOBODY, r.head ? 1L : 0L);
  curl_easy_setopt(hd.h, CURLOPT_HTTPGET, r.head ? 0L : 1L);
  if (r.head) {
    curl_easy_setopt(hd.h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(hd.h, CURLOPT_RANGE, nullptr);
  } else {
    std::string range = std::to_string(r.off) + "-" + std::to_string(r.off + r.want - 1);
    curl_easy_setopt(hd.h, CURLOPT_RANGE, range.c_str());  // copied by libcurl
  }
}

// 503/429: again after Retry-After (capped) or an exponential back-off, while the request's
// retry budget lasts.
Result<bool> Session::throttle(Request& r, long status) {
  const auto now = Clock::now();
  long delay_ms = r.retry_after_s >= 0
                      ? std::min(r.retry_after_s * 1000, kMaxRetryAfterMs)
                      : std::min(kFirstBackoffMs << std::min(r.throttled, 16), kMaxBackoffMs);
  const auto spent =
      std::chrono::duration_cast<std::chrono::milliseconds>(now - r.first_try).count();
  if (spent + delay_ms > opt_.retry_budget_ms) {
    return fail(VIX_E_HOST_TCP_CONN_LOST,
                r.url + ": HTTP " + std::to_string(status) + " (server busy) " +
                    std::to_string(r.throttled + 1) + " times in " + std::to_string(spent) +
                    " ms: retries stop at vixfs.https.retryBudgetMs = " +
                    std::to_string(opt_.retry_budget_ms) + " " + r.error_body);
  }
  log::warn(r.url + ": HTTP " + std::to_string(status) + " (server busy), retrying in " +
            std::to_string(delay_ms) + " ms" +
            (r.retry_after_s >= 0 ? " (Retry-After " + std::to_string(r.retry_after_s) + " s)"
                                  : std::string()));
  ++r.throttled;
  ++throttled_;
  --r.attempts;  // not a failed attempt
  r.not_before = now + std::chrono::milliseconds(delay_ms);
  return true;
}

// After a transfer: true to retry it, an error, or done.
Result<bool> Session::finish(Handle& hd, Request& r, CURLcode rc) {
  if (hd.pin.mismatch) return hd.pin.mismatch_error(r.url, opt_.tls.thumbprint);
  if (r.ignored_range) {
    return fail(VIX_E_FILE_ERROR,
                r.url + ": HTTP 200 to a range request (the server ignored the Range header)");
  }
  if (r.overflow) {
    return fail(VIX_E_FILE_ERROR, r.url + ": the server sent more than the " +
                                      std::to_string(r.want) + " bytes asked for at offset " +
                                      std::to_string(r.off));
  }
  if (rc != CURLE_OK) {
    if (is_drop(rc) && r.attempts < 2) return true;
    VixError code = is_drop(rc) || rc == CURLE_OPERATION_TIMEDOUT ? VIX_E_HOST_TCP_CONN_LOST
                    : rc == CURLE_COULDNT_CONNECT                 ? VIX_E_HOST_NETWORK_CONN_REFUSED
                                                                  : VIX_E_CANNOT_CONNECT_TO_HOST;
    std::string why = hd.errbuf[0] ? hd.errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT && opt_.stall_timeout_ms > 0) {
      why += " (limits: no data for vixDiskLib.nfc.ReadTimeoutMs = " +
             std::to_string(opt_.stall_timeout_ms) + " ms, a whole request vixfs.soap.timeoutMs)";
    }
    return fail(code, r.url + ": " + why + (r.attempts > 1 ? " (after one retry)" : ""));
  }
  long status = 0;
  curl_easy_getinfo(hd.h, CURLINFO_RESPONSE_CODE, &status);
  if (status == 404) return fail(VIX_E_FILE_NOT_FOUND, r.url + ": HTTP 404 (no such file)");
  if (status == 503 || status == 429) return throttle(r, status);
  if ((status == 401 || status == 403) && opt_.acquire_ticket &&
      r.ticket_renewals < kMaxTicketRenewals) {
    // The host refused the ticket: used already, expired, or never valid. A ticket of our own.
    VIX_ASSIGN_OR_RETURN(r.ticket, opt_.acquire_ticket(r.url));
    r.fresh_ticket = true;
    ++r.ticket_renewals;
    ++ticket_renewals_;
    --r.attempts;
    return true;
  }
  if ((status == 401 || status == 403) && !opt_.acquire_ticket && opt_.renew_cookie && !r.renewed) {
    // The session expired or was re-logged in elsewhere: one renewal, then the request again.
    VIX_TRY(renew_cookie(hd.cookie_generation));
    r.renewed = true;
    --r.attempts;
    return true;
  }
  if (status == 401 || status == 403) {
    return fail(VIX_E_HOST_NOT_CONNECTED,
                r.url + ": HTTP " + std::to_string(status) +
                    (opt_.acquire_ticket ? " (host ticket not accepted, " +
                                               std::to_string(r.ticket_renewals) + " asked again)"
                                         : " (session not accepted)"));
  }
  if (r.fresh_ticket) {
    // A ticket the host accepted: the next requests for the file start with it.
    std::lock_guard lock(cookie_mu_);
    for (auto& [url, ticket] : tickets_)
      if (url == r.url) ticket = r.ticket;
    r.fresh_ticket = false;
  }
  if (r.head) {
    if (status != 200) {
      return fail(VIX_E_FILE_ERROR,
                  r.url + ": HTTP " + std::to_string(status) + " " + r.error_body);
    }
    curl_easy_getinfo(hd.h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r.content_length);
    if (r.content_length < 0) {
      return fail(VIX_E_FILE_ERROR, r.url + ": no Content-Length in the HEAD answer");
    }
    return false;
  }
  uint64_t a = 0, b = 0, total = 0;
  if (status == 206) {
    if (!parse_content_range(r.content_range, &a, &b, &total) || a != r.off ||
        b != r.off + r.want - 1 || (r.total != 0 && total != r.total)) {
      return fail(VIX_E_FILE_ERROR, r.url + ": asked for bytes " + std::to_string(r.off) + "-" +
                                        std::to_string(r.off + r.want - 1) +
                                        ", the server answered Content-Range \"" + r.content_range +
                                        "\"");
    }
  } else if (status != 200 || r.off != 0 || r.want != r.total) {
    // 200 is the whole file: acceptable only when that is what was asked for.
    return fail(VIX_E_FILE_ERROR,
                r.url + ": HTTP " + std::to_string(status) + " to a range request " + r.error_body);
  }
  if (r.got != r.want) {
    if (r.attempts < 2) return true;
    return fail(VIX_E_FILE_ERROR, r.url + ": short body: " + std::to_string(r.got) + " of " +
                                      std::to_string(r.want) + " bytes at offset " +
                                      std::to_string(r.off));
  }
  return false;
}

// Asks for a new cookie unless another request already got one since `rejected_generation`.
Result<void> Session::renew_cookie(uint64_t rejected_generation) {
  std::lock_guard renewing(renew_mu_);
  std::string rejected;
  {
    std::lock_guard lock(cookie_mu_);
    if (cookie_generation_ != rejected_generation) return ok();
    rejected = opt_.cookie;
  }
  VIX_ASSIGN_OR_RETURN(std::string fresh, opt_.renew_cookie(rejected));
  std::lock_guard lock(cookie_mu_);
  opt_.cookie = std::move(fresh);
  ++cookie_generation_;
  return ok();
}

Result<void> Session::run_serial(Handle& hd, std::vector<Request>& reqs) {
  for (Request& r : reqs) {
    for (;;) {
      if (r.not_before > Clock::now()) std::this_thread::sleep_until(r.not_before);
      prepare(hd, r);
      CURLcode rc = curl_easy_perform(hd.h);
      VIX_ASSIGN_OR_RETURN(bool again, finish(hd, r, rc));
      if (!again) break;
    }
  }
  return ok();
}

Result<void> Session::run_multi(std::vector<std::unique_ptr<Handle>>& handles,
                                std::vector<Request>& reqs) {
  CURLM* m = curl_multi_init();
  if (m == nullptr) return fail(VIX_E_OUT_OF_MEMORY, "https: curl_multi_init failed");
  std::vector<Handle*> free_handles;
  for (auto& h : handles) free_handles.push_back(h.get());
  std::vector<Request*> queue;  // the next one at the back
  for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) queue.push_back(&*it);
  int running = 0;
  Result<void> result = ok();
  // Starts the requests that are due on free handles; returns how long until the next is due.
  auto start_next = [&]() -> long {
    long wait_ms = 1000;
    const auto now = Clock::now();
    for (size_t i = queue.size(); i-- > 0 && !free_handles.empty();) {
      Request* r = queue[i];
      if (r->not_before > now) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r->not_before - now);
        wait_ms = std::min<long>(wait_ms, std::max<long>(1, static_cast<long>(ms.count())));
        continue;
      }
      queue.erase(queue.begin() + static_cast<long>(i));
      Handle* hd = free_handles.back();
      free_handles.pop_back();
      prepare(*hd, *r);
      curl_multi_add_handle(m, hd->h);
    }
    return wait_ms;
  };
  long wait_ms = start_next();
  do {
    CURLMcode mc = curl_multi_perform(m, &running);
    if (mc != CURLM_OK) {
      result = fail(VIX_E_FAIL, std::string("https: ") + curl_multi_strerror(mc));
      break;
    }
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(m, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Handle* hd = nullptr;
      for (auto& h : handles)
        if (h->h == msg->easy_handle) hd = h.get();
      CURLcode rc = msg->data.result;
      curl_multi_remove_handle(m, msg->easy_handle);
      auto again = finish(*hd, *hd->req, rc);
      if (!again.ok()) {
        if (result.ok()) result = std::move(again).error();
        queue.clear();
      } else if (*again) {
        queue.push_back(hd->req);
      }
      free_handles.push_back(hd);
    }
    wait_ms = start_next();
    if (free_handles.size() == handles.size() && queue.empty()) break;
    curl_multi_poll(m, nullptr, 0, static_cast<int>(wait_ms), nullptr);
  } while (true);
  for (auto& h : handles) curl_multi_remove_handle(m, h->h);  // harmless when not added
  curl_multi_cleanup(m);
  return result;
}

}  // namespace vix::https_detail
