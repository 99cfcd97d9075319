#include "transports/https.h"

#include <algorithm>
#include <vector>

#include "common/log.h"
#include "transports/config_keys.h"
#include "transports/https_host.h"
#include "transports/https_session.h"
#include "vmdk/vmdk.h"
#include "vsphere/inventory.h"
#include "vsphere/session.h"
#include "vsphere/tls.h"

namespace vix {

using https_detail::Request;
using https_detail::Session;

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

constexpr IntKey kHttpsConnections{
    "vixfs.https.connections", 1, 64, 4,
    "https: range requests in flight to one host, all disks together"};
constexpr FlagKey kHttpsDirect{
    "vixfs.https.direct", true,
    "https: read straight from the VM's ESXi host when the server is a vCenter"};
constexpr IntKey kHttpsRetryBudget{"vixfs.https.retryBudgetMs", 0, 3600000, 60000,
                                   "https: ms one request may be retried after HTTP 503/429"};

// The transport's device: the VMDK engine over the files, with what the requests counted.
class HttpsDevice final : public BlockDeviceWrapper {
 public:
  HttpsDevice(std::unique_ptr<BlockDevice> inner, std::shared_ptr<Session> session)
      : BlockDeviceWrapper(std::move(inner)), session_(std::move(session)) {}
  LinkCounters link_counters() const override {
    LinkCounters c = BlockDeviceWrapper::link_counters();
    c["throttled"] = session_->throttled();
    if (session_->options().acquire_ticket) c["ticketRenewals"] = session_->ticket_renewals();
    return c;
  }

 private:
  std::shared_ptr<Session> session_;
};

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
  VIX_ASSIGN_OR_RETURN(int64_t budget, ctx.config.get(kHttpsRetryBudget));
  o.retry_budget_ms = static_cast<long>(budget);
  VIX_ASSIGN_OR_RETURN(int64_t stall, ctx.config.get(kNfcReadTimeout));
  o.stall_timeout_ms = static_cast<long>(stall);
  VIX_ASSIGN_OR_RETURN(bool direct, ctx.config.get(kHttpsDirect));

  auto open_with = [&](const HttpsOptions& opts) -> Result<std::unique_ptr<BlockDevice>> {
    VIX_ASSIGN_OR_RETURN(auto session, Session::make(opts));
    HttpsOpener opener(session);
    vmdk::OpenOptions options;
    options.read_only = true;  // writes fail with VIX_E_FILE_READ_ONLY
    options.single_link = (flags & VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) != 0;
    options.transport = name();
    VIX_ASSIGN_OR_RETURN(auto disk, vmdk::open(opener, loc.path, options));
    return std::unique_ptr<BlockDevice>(new HttpsDevice(std::move(disk), std::move(session)));
  };
  if (direct) {
    // Against a standalone ESXi the server is the host already.
    auto sc = remote->client().service_content();
    if (sc.ok() && sc->api_type == "VirtualCenter") {
      auto host = host_https_options(ctx, o);
      auto disk = host.ok() ? open_with(*host) : Result<std::unique_ptr<BlockDevice>>(host.error());
      if (disk.ok()) {
        log::info("https: " + path + ": reading straight from the host at " +
                  https_detail::url_authority(host->endpoint));
        return disk;
      }
      log::warn("https: " + path + ": reading through " + o.endpoint +
                ", not straight from the VM's host: " + disk.error().message);
    }
  }
  return open_with(o);
}

KeyList https_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kHttpsConnections, &kHttpsDirect,
                                               &kHttpsRetryBudget};
  return kKeys;
}

std::unique_ptr<Transport> make_https_transport() {
  return std::make_unique<HttpsTransport>();
}

}  // namespace vix
