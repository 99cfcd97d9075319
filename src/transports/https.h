// The "https" transport: a remote disk read through the datastore file API
// (GET /folder/<path>?dcPath=<dc>&dsName=<ds> with Range headers), the VMDK engine running over
// HTTP range reads. Read-only. Against a vCenter it reads straight from the VM's ESXi host with a
// generic service ticket per file (the cookie vmware_cgi_ticket, https_host.cc), else, or when
// that fails at open, through the vCenter with the session cookie. Requests to one host share a
// budget of vixfs.https.connections in flight across every disk of the process; 503 and 429 are
// answered with back-off within vixfs.https.retryBudgetMs; a request that receives nothing for
// vixDiskLib.nfc.ReadTimeoutMs fails.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/byte_source.h"
#include "transports/transport.h"
#include "vsphere/http.h"

namespace vix {

class HttpsTransport final : public Transport {
 public:
  std::string_view name() const override { return "https"; }
  Result<std::unique_ptr<BlockDevice>> open(const TransportContext& ctx, const std::string& path,
                                            uint32_t flags) override;
};

struct HttpsOptions {
  vsphere::ConnectOptions tls;  // thumbprint / CA file / timeouts of the SOAP session
  std::string endpoint;         // the SOAP URL (…/sdk): scheme and authority of the file URLs
  std::string cookie;           // vmware_soap_session value
  // Called once per request answered 401/403 with the cookie the server refused; returns the
  // session's current cookie, logging in again when that one is the refused one. Optional.
  std::function<Result<std::string>(const std::string& rejected)> renew_cookie;
  std::string dc_path;
  std::string datastore;
  unsigned connections = 4;       // range requests in flight to one host, every disk together
  size_t max_request = 4u << 20;  // bytes per range request
  // Straight from an ESXi host: a ticket for `url` (AcquireGenericServiceTicket), sent as the
  // cookie vmware_cgi_ticket in place of the session cookie; asked again when the host answers
  // 401/403 (tickets may be single-use or short-lived). Null: the session cookie.
  std::function<Result<std::string>(const std::string& url)> acquire_ticket;
  long stall_timeout_ms = 0;     // a request that receives no byte this long fails (0: no limit)
  long retry_budget_ms = 60000;  // how long one request may be retried after 503/429
};

// Files of one datastore over HTTPS; paths are relative to the datastore root. Sibling names
// (extents, parents) resolve against the descriptor's folder; "[other] path" names another
// datastore of the same datacenter. Writes are VIX_E_FILE_READ_ONLY. nullptr when the thumbprint
// is malformed or libcurl cannot be set up (the transport itself reports those as errors).
std::unique_ptr<SourceOpener> make_https_opener(const HttpsOptions& options);

}  // namespace vix
