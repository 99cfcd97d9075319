#include "transports/https.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

#include "transports/config_keys.h"
#include "vmdk/vmdk.h"
#include "vsphere/inventory.h"
#include "vsphere/session.h"
#include "vsphere/tls.h"

namespace vix {

namespace {

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
  std::string error_body;  // the start of a non-2xx body, for the message
  int attempts = 0;
  bool renewed = false;            // the session cookie was renewed once for this request
  uint64_t total = 0;              // the file size the answer must state (0 for HEAD)
  curl_off_t content_length = -1;  // of a HEAD answer
};

struct Handle {
  CURL* h = nullptr;
  vsphere::PeerCheck pin;
  char errbuf[CURL_ERROR_SIZE] = {0};
  Request* req = nullptr;
  uint64_t cookie_generation = ~uint64_t{0};  // of the cookie set on h
  ~Handle() {
    if (h) curl_easy_cleanup(h);
  }
};

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

size_t on_header(char* data, size_t size, size_t n, void* arg) {
  auto* hd = static_cast<Handle*>(arg);
  std::string_view line(data, size * n);
  if (line.substr(0, 5) == "HTTP/") hd->req->content_range.clear();  // a new response
  constexpr std::string_view kName = "content-range:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    }
    if (match) {
      std::string_view v = line.substr(kName.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
        v.remove_suffix(1);
      hd->req->content_range = std::string(v);
    }
  }
  return size * n;
}

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
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

// State shared by the opener and every source it made (sources outlive the opener).
class Session {
 public:
  static Result<std::shared_ptr<Session>> make(const HttpsOptions& options) {
    std::shared_ptr<Session> s(new Session());
    s->opt_ = options;
    if (s->opt_.connections == 0) s->opt_.connections = 1;
    if (s->opt_.max_request == 0) s->opt_.max_request = HttpsOptions{}.max_request;
    if (!options.tls.thumbprint.empty()) {
      VIX_ASSIGN_OR_RETURN(s->pin_, normalize_thumbprint(options.tls.thumbprint));
    }
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
  ~Session() {
    idle_.clear();  // handles first: they reference the share
    if (share_) curl_share_cleanup(share_);
  }

  const HttpsOptions& options() const { return opt_; }
  std::string url(const std::string& datastore, const std::string& path) const {
    return vsphere::datastore_file_url(opt_.endpoint, opt_.dc_path, datastore, path);
  }

  // Runs the requests, up to `connections` at a time; each dropped connection is retried once.
  Result<void> run(std::vector<Request>& reqs) {
    if (reqs.empty()) return ok();
    size_t n = std::min<size_t>(reqs.size(), opt_.connections);
    std::vector<std::unique_ptr<Handle>> handles;
    for (size_t i = 0; i < n; ++i) {
      VIX_ASSIGN_OR_RETURN(auto h, acquire());
      handles.push_back(std::move(h));
    }
    Result<void> result = n == 1 ? run_serial(*handles[0], reqs) : run_multi(handles, reqs);
    for (auto& h : handles) release(std::move(h));
    return result;
  }

 private:
  Session() = default;

  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* arg) {
    static_cast<Session*>(arg)->locks_[data % kLocks].lock();
  }
  static void unlock(CURL*, curl_lock_data data, void* arg) {
    static_cast<Session*>(arg)->locks_[data % kLocks].unlock();
  }

  Result<std::unique_ptr<Handle>> acquire() {
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

  void release(std::unique_ptr<Handle> h) {
    std::lock_guard lock(pool_mu_);
    // Enough for the cache's prefetch threads and FUSE's readers at once: a handle dropped here
    // takes its connection with it.
    if (idle_.size() < std::max<size_t>(2 * opt_.connections, 24)) idle_.push_back(std::move(h));
  }

  void prepare(Handle& hd, Request& r) {
    hd.req = &r;
    hd.pin.mismatch = false;
    hd.errbuf[0] = 0;
    r.got = 0;
    r.overflow = false;
    r.ignored_range = false;
    r.content_range.clear();
    r.error_body.clear();
    ++r.attempts;
    {
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

  // After a transfer: true to retry it, an error, or done.
  Result<bool> finish(Handle& hd, Request& r, CURLcode rc) {
    if (hd.pin.mismatch) return hd.pin.mismatch_error(r.url, opt_.tls.thumbprint);
    if (r.ignored_range) {
      return fail(VIX_E_FILE_ERROR, r.url +
                                        ": HTTP 200 to a range request (the server ignored "
                                        "the Range header)");
    }
    if (r.overflow) {
      return fail(VIX_E_FILE_ERROR, r.url + ": the server sent more than the " +
                                        std::to_string(r.want) + " bytes asked for at offset " +
                                        std::to_string(r.off));
    }
    if (rc != CURLE_OK) {
      if (is_drop(rc) && r.attempts < 2) return true;
      VixError code = is_drop(rc) || rc == CURLE_OPERATION_TIMEDOUT ? VIX_E_HOST_TCP_CONN_LOST
                      : rc == CURLE_COULDNT_CONNECT ? VIX_E_HOST_NETWORK_CONN_REFUSED
                                                    : VIX_E_CANNOT_CONNECT_TO_HOST;
      return fail(code, r.url + ": " + (hd.errbuf[0] ? hd.errbuf : curl_easy_strerror(rc)) +
                            (r.attempts > 1 ? " (after one retry)" : ""));
    }
    long status = 0;
    curl_easy_getinfo(hd.h, CURLINFO_RESPONSE_CODE, &status);
    if (status == 404) return fail(VIX_E_FILE_NOT_FOUND, r.url + ": HTTP 404 (no such file)");
    if ((status == 401 || status == 403) && opt_.renew_cookie && !r.renewed) {
      // The session expired or was re-logged in elsewhere: one renewal, then the request again.
      VIX_TRY(renew_cookie(hd.cookie_generation));
      r.renewed = true;
      --r.attempts;
      return true;
    }
    if (status == 401 || status == 403) {
      return fail(VIX_E_HOST_NOT_CONNECTED,
                  r.url + ": HTTP " + std::to_string(status) + " (session not accepted)");
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
                                          ", the server answered Content-Range \"" +
                                          r.content_range + "\"");
      }
    } else if (status != 200 || r.off != 0 || r.want != r.total) {
      // 200 is the whole file: acceptable only when that is what was asked for.
      return fail(VIX_E_FILE_ERROR, r.url + ": HTTP " + std::to_string(status) +
                                        " to a range request " + r.error_body);
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
  Result<void> renew_cookie(uint64_t rejected_generation) {
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

  Result<void> run_serial(Handle& hd, std::vector<Request>& reqs) {
    for (Request& r : reqs) {
      for (;;) {
        prepare(hd, r);
        CURLcode rc = curl_easy_perform(hd.h);
        VIX_ASSIGN_OR_RETURN(bool again, finish(hd, r, rc));
        if (!again) break;
      }
    }
    return ok();
  }

  Result<void> run_multi(std::vector<std::unique_ptr<Handle>>& handles,
                         std::vector<Request>& reqs) {
    CURLM* m = curl_multi_init();
    if (m == nullptr) return fail(VIX_E_OUT_OF_MEMORY, "https: curl_multi_init failed");
    std::vector<Handle*> free_handles;
    for (auto& h : handles) free_handles.push_back(h.get());
    std::vector<Request*> queue;
    for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) queue.push_back(&*it);
    int running = 0;
    Result<void> result = ok();
    auto start_next = [&] {
      while (!queue.empty() && !free_handles.empty()) {
        Handle* hd = free_handles.back();
        free_handles.pop_back();
        Request* r = queue.back();
        queue.pop_back();
        prepare(*hd, *r);
        curl_multi_add_handle(m, hd->h);
      }
    };
    start_next();
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
      start_next();
      if (free_handles.size() == handles.size() && queue.empty()) break;
      curl_multi_poll(m, nullptr, 0, 1000, nullptr);
    } while (true);
    for (auto& h : handles) curl_multi_remove_handle(m, h->h);  // harmless when not added
    curl_multi_cleanup(m);
    return result;
  }

  static constexpr int kLocks = CURL_LOCK_DATA_LAST;
  HttpsOptions opt_;
  std::string pin_;
  CURLSH* share_ = nullptr;
  std::mutex locks_[kLocks];
  std::mutex pool_mu_;
  std::mutex renew_mu_;   // one renewal at a time
  std::mutex cookie_mu_;  // guards opt_.cookie and cookie_generation_
  uint64_t cookie_generation_ = 0;
  std::vector<std::unique_ptr<Handle>> idle_;
};

}  // namespace

namespace {

class HttpsSource final : public ByteSource {
 public:
  HttpsSource(std::shared_ptr<Session> session, std::string url, uint64_t size)
      : session_(std::move(session)), url_(std::move(url)), size_(size) {}

  static Result<std::unique_ptr<ByteSource>> open(std::shared_ptr<Session> session,
                                                  std::string url) {
    std::vector<Request> head(1);
    head[0].url = url;
    head[0].head = true;
    VIX_TRY(session->run(head));
    uint64_t size = static_cast<uint64_t>(head[0].content_length);
    return std::unique_ptr<ByteSource>(new HttpsSource(std::move(session), std::move(url), size));
  }

  Result<size_t> pread(void* buf, size_t len, uint64_t off) override {
    if (off >= size_ || len == 0) return size_t{0};
    len = static_cast<size_t>(std::min<uint64_t>(len, size_ - off));
    const size_t step = session_->options().max_request;
    std::vector<Request> reqs;
    reqs.reserve(len / step + 1);
    for (size_t done = 0; done < len;) {
      Request r;
      r.url = url_;
      r.off = off + done;
      r.want = std::min(step, len - done);
      r.dst = static_cast<uint8_t*>(buf) + done;
      r.total = size_;
      done += r.want;
      reqs.push_back(std::move(r));
    }
    VIX_TRY(session_->run(reqs));
    return len;
  }
  Result<size_t> pwrite(const void*, size_t, uint64_t) override {
    return fail(VIX_E_FILE_READ_ONLY, url_ + ": the https transport is read-only");
  }
  Result<uint64_t> size() override { return size_; }
  Result<void> flush() override { return ok(); }
  Result<void> truncate(uint64_t) override {
    return fail(VIX_E_FILE_READ_ONLY, url_ + ": the https transport is read-only");
  }
  bool writable() const override { return false; }
  const std::string& name() const override { return url_; }

 private:
  std::shared_ptr<Session> session_;
  std::string url_;
  uint64_t size_;
};

}  // namespace

namespace {

class HttpsOpener final : public SourceOpener {
 public:
  explicit HttpsOpener(std::shared_ptr<Session> session) : session_(std::move(session)) {}

  Result<std::unique_ptr<ByteSource>> open(const std::string& path, OpenMode mode) override {
    if (mode.writable) {
      return fail(VIX_E_FILE_READ_ONLY, path + ": the https transport is read-only");
    }
    std::string datastore = session_->options().datastore;
    std::string rel = path;
    // A parentFileNameHint may name another datastore of the same datacenter.
    if (auto dsp = vsphere::parse_datastore_path(path)) {
      datastore = dsp->datastore;
      rel = dsp->path;
    }
    while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
    if (rel.empty()) return fail(VIX_E_INVALID_ARG, "https: empty file path");
    return HttpsSource::open(session_, session_->url(datastore, rel));
  }
  Result<std::unique_ptr<ByteSource>> create(const std::string& path, bool) override {
    return fail(VIX_E_FILE_READ_ONLY, path + ": the https transport is read-only");
  }
  Result<void> remove(const std::string& path) override {
    return fail(VIX_E_FILE_READ_ONLY, path + ": the https transport is read-only");
  }
  Result<void> rename(const std::string& from, const std::string&) override {
    return fail(VIX_E_FILE_READ_ONLY, from + ": the https transport is read-only");
  }
  std::string resolve(const std::string& base_file, const std::string& relative) const override {
    if (relative.empty() || relative.front() == '[' || relative.front() == '/') return relative;
    std::string prefix;
    std::string base = base_file;
    if (auto dsp = vsphere::parse_datastore_path(base_file)) {
      prefix = "[" + dsp->datastore + "] ";
      base = dsp->path;
    }
    size_t slash = base.rfind('/');
    return prefix + (slash == std::string::npos ? relative : base.substr(0, slash + 1) + relative);
  }

 private:
  std::shared_ptr<Session> session_;
};

constexpr IntKey kHttpsConnections{"vixfs.https.connections", 1, 64, 4,
                                   "https: range requests in flight per read"};

}  // namespace

std::unique_ptr<SourceOpener> make_https_opener(const HttpsOptions& options) {
  auto session = Session::make(options);
  if (!session.ok()) return nullptr;
  return std::make_unique<HttpsOpener>(std::move(session).value());
}

Result<std::unique_ptr<BlockDevice>> HttpsTransport::open(const TransportContext& ctx,
                                                          const std::string& path, uint32_t flags) {
  if (ctx.remote == nullptr) {
    return fail(VIX_E_NOT_SUPPORTED, "https: needs a connection to a server (local connection)");
  }
  VIX_ASSIGN_OR_RETURN(DatastoreLocation loc, ctx.remote->locate(path));
  HttpsOptions o;
  o.tls = ctx.remote->options();
  o.endpoint = ctx.remote->endpoint();
  o.cookie = ctx.remote->cookie();
  RemoteSession* remote = ctx.remote;  // outlives the disk (a Connection outlives its Disks)
  o.renew_cookie = [remote](const std::string& rejected) { return remote->renew_cookie(rejected); };
  o.dc_path = loc.dc_path;
  o.datastore = loc.datastore;
  VIX_ASSIGN_OR_RETURN(int64_t conns, ctx.config.get(kHttpsConnections));
  o.connections = static_cast<unsigned>(conns);
  VIX_ASSIGN_OR_RETURN(auto session, Session::make(o));
  HttpsOpener opener(std::move(session));
  vmdk::OpenOptions options;
  options.read_only = true;  // writes fail with VIX_E_FILE_READ_ONLY
  options.single_link = (flags & VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) != 0;
  options.transport = name();
  return vmdk::open(opener, loc.path, options);
}

KeyList https_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kHttpsConnections};
  return kKeys;
}

std::unique_ptr<Transport> make_https_transport() {
  return std::make_unique<HttpsTransport>();
}

}  // namespace vix
