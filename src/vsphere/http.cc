#include "vsphere/http.h"

#include "vsphere/tls.h"

#include <curl/curl.h>

#include <cctype>
#include <mutex>

namespace vix::vsphere {

namespace {

struct Transfer {
  std::string body;
  uint64_t limit = 0;
  bool too_big = false;
  std::string cookie;
  bool cookie_seen = false;
};

size_t on_body(char* data, size_t size, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  size_t len = size * n;
  if (t->body.size() + len > t->limit) {
    t->too_big = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  t->body.append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  std::string_view line(data, size * n);
  constexpr std::string_view kSetCookie = "set-cookie:";
  if (line.size() > kSetCookie.size()) {
    bool match = true;
    for (size_t i = 0; i < kSetCookie.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(line[i])) == kSetCookie[i];
    }
    if (match) {
      std::string_view v = line.substr(kSetCookie.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      constexpr std::string_view kName = "vmware_soap_session=";
      if (v.substr(0, kName.size()) == kName) {
        v.remove_prefix(kName.size());
        // Kept verbatim (real vCenter quotes it) up to the first attribute.
        size_t end = v.find_first_of(";\r\n");
        t->cookie = std::string(v.substr(0, end));
        t->cookie_seen = true;
      }
    }
  }
  return size * n;
}

class CurlTransport final : public Transport {
 public:
  CurlTransport(CURL* h, ConnectOptions opts, std::string endpoint, std::string host)
      : h_(h), opts_(std::move(opts)), endpoint_(std::move(endpoint)), host_(std::move(host)) {}
  ~CurlTransport() override { curl_easy_cleanup(h_); }

  Result<HttpReply> post(std::string_view soap_action, const std::string& body) override {
    std::lock_guard lock(mu_);
    Transfer t;
    t.limit = opts_.max_response_bytes;
    pin_check_.mismatch = false;
    std::string action_header = "SOAPAction: \"" + std::string(soap_action) + "\"";
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: text/xml; charset=utf-8");
    headers = curl_slist_append(headers, action_header.c_str());
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h_, CURLOPT_HEADERDATA, &t);
    std::string cookie_header;
    if (!cookie_.empty()) cookie_header = "vmware_soap_session=" + cookie_;
    curl_easy_setopt(h_, CURLOPT_COOKIE, cookie_header.empty() ? nullptr : cookie_header.c_str());
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf);

    CURLcode rc = curl_easy_perform(h_);
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, nullptr);
    curl_slist_free_all(headers);

    if (pin_check_.mismatch) return pin_check_.mismatch_error(host_, pin_display_);
    if (t.too_big || (rc == CURLE_FILESIZE_EXCEEDED)) {
      return fail(VIX_E_FILE_TOO_BIG, host_ + ": SOAP response larger than " +
                                          std::to_string(opts_.max_response_bytes) +
                                          " bytes refused (vixfs.soap.maxResponseMB)");
    }
    if (rc != CURLE_OK) return transport_error(rc, errbuf);
    if (t.cookie_seen) cookie_ = t.cookie;
    HttpReply reply;
    curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &reply.status);
    reply.body = std::move(t.body);
    return reply;
  }

  std::string cookie() const override {
    std::lock_guard lock(mu_);
    return cookie_;
  }
  void set_cookie(std::string value) override {
    std::lock_guard lock(mu_);
    cookie_ = std::move(value);
  }
  std::string endpoint() const override { return endpoint_; }

  Result<void> configure() {
    if (!opts_.thumbprint.empty()) {
      VIX_ASSIGN_OR_RETURN(pin_check_.expected, normalize_thumbprint(opts_.thumbprint));
      pin_display_ = opts_.thumbprint;
    }
    curl_easy_setopt(h_, CURLOPT_URL, endpoint_.c_str());
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h_, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h_, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h_, CURLOPT_CONNECTTIMEOUT_MS, opts_.connect_timeout_ms);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT_MS, opts_.timeout_ms);
    curl_easy_setopt(h_, CURLOPT_USERAGENT, "vixfs/" VIXFS_VERSION);
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h_, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(opts_.max_response_bytes));
    curl_easy_setopt(h_, CURLOPT_ACCEPT_ENCODING, "");
    VIX_TRY(configure_peer_verification(h_, &pin_check_, opts_.ca_file));
    return ok();
  }

 private:
  Error transport_error(CURLcode rc, const char* errbuf) const {
    std::string detail = *errbuf ? errbuf : curl_easy_strerror(rc);
    VixError code = VIX_E_CANNOT_CONNECT_TO_HOST;
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST:
        code = VIX_E_HOST_SERVER_NOT_FOUND;
        break;
      case CURLE_COULDNT_CONNECT:
        code = VIX_E_HOST_NETWORK_CONN_REFUSED;
        break;
      case CURLE_OPERATION_TIMEDOUT:
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
      case CURLE_PARTIAL_FILE:
        code = VIX_E_HOST_TCP_CONN_LOST;
        break;
      default:
        break;
    }
    return fail(code, host_ + ": " + detail);
  }

  mutable std::mutex mu_;
  CURL* h_;
  ConnectOptions opts_;
  std::string endpoint_;
  std::string host_;
  std::string pin_display_;
  // A member, not a local: a kept-alive connection's SSL_CTX keeps pointing at it.
  PeerCheck pin_check_;
  std::string cookie_;
};

}  // namespace

Result<std::unique_ptr<Transport>> make_curl_transport(const ConnectOptions& options) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

  CURLU* u = curl_url();
  if (!u) return fail(VIX_E_OUT_OF_MEMORY, "curl_url");
  std::string endpoint, host;
  CURLUcode uc = curl_url_set(u, CURLUPART_URL, options.url.c_str(), 0);
  char* scheme = nullptr;
  char* h = nullptr;
  char* path = nullptr;
  if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_HOST, &h, 0);
  if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_PATH, &path, 0);
  // Plain http would send the password in clear: https only.
  bool good = uc == CURLUE_OK && std::string_view(scheme) == "https";
  if (good) {
    host = h;
    if (std::string_view(path).empty() || std::string_view(path) == "/") {
      curl_url_set(u, CURLUPART_PATH, "/sdk", 0);
    }
    char* full = nullptr;
    if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) endpoint = full;
    curl_free(full);
  }
  curl_free(scheme);
  curl_free(h);
  curl_free(path);
  curl_url_cleanup(u);
  if (!good || endpoint.empty()) {
    return fail(VIX_E_INVALID_HOSTNAME_SPECIFICATION,
                "server URL '" + options.url +
                    "': expected https://HOST[:PORT][/sdk] (plain http is refused)");
  }
  CURL* handle = curl_easy_init();
  if (!handle) return fail(VIX_E_OUT_OF_MEMORY, "curl_easy_init failed");
  auto t = std::make_unique<CurlTransport>(handle, options, endpoint, host);
  VIX_TRY(t->configure());
  return std::unique_ptr<Transport>(std::move(t));
}

}  // namespace vix::vsphere
