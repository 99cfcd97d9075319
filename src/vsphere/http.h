// The HTTP layer under the SOAP client: one libcurl easy handle (keep-alive) guarded by a mutex,
// TLS always verified (by certificate thumbprint or by a CA bundle), the vmware_soap_session cookie
// captured from Set-Cookie and sent back verbatim, and a hard cap on the response size.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace vix::vsphere {

struct HttpReply {
  long status = 0;
  std::string body;
};

struct ConnectOptions {
  // https://host[:port] or https://host[:port]/sdk; "/sdk" is added when the path is empty.
  // Plain http is refused.
  std::string url;
  // Trust: a thumbprint of the server's leaf certificate (SHA-1 as vSphere prints it, or SHA-256;
  // hex, colons optional, any case), else a CA bundle file, else the system CA store. Never off.
  std::string thumbprint;
  std::string ca_file;
  uint64_t max_response_bytes = 256ull << 20;
  long connect_timeout_ms = 10000;
  long timeout_ms = 120000;
};

// What the SOAP client needs from HTTP; tests substitute canned responses.
class Transport {
 public:
  virtual ~Transport() = default;
  // POSTs a SOAP envelope. Any HTTP status comes back as a reply (faults are HTTP 500); only
  // transport failures are errors.
  virtual Result<HttpReply> post(std::string_view soap_action, const std::string& body) = 0;
  // The vmware_soap_session cookie value exactly as the server sent it ("" when none).
  virtual std::string cookie() const = 0;
  virtual void set_cookie(std::string value) = 0;
  // The SOAP endpoint URL (…/sdk).
  virtual std::string endpoint() const = 0;
};

Result<std::unique_ptr<Transport>> make_curl_transport(const ConnectOptions& options);

}  // namespace vix::vsphere
