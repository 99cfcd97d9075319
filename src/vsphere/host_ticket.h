// Reading a datastore file straight from the ESXi host that runs the VM, when the session is a
// vCenter's: where the host answers (HostSystem name, summary.config.port and sslThumbprint,
// the management vnic) and the generic service ticket (SessionManager.AcquireGenericServiceTicket)
// that the host accepts as the cookie vmware_cgi_ticket for one URL and method.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace vix::vsphere {

class Client;

struct HostAccess {
  std::string name;            // HostSystem name, for messages
  std::string address;         // where to connect: an IP literal or a host name
  uint16_t port = 443;         // summary.config.port (443 when not reported)
  std::string ssl_thumbprint;  // summary.config.sslThumbprint (SHA-1), "" when not reported
};

// The host's address: its name when that is an IP literal, else the IP of its management vnic
// (config.network.vnic, device vmk0, else the first with an address), else its name.
Result<HostAccess> host_access(Client& client, const std::string& host_moref);

// A ticket for `method` ("httpGet", "httpPut", ...) on `url`; a secret, never logged. A server
// that refuses answers a SOAP fault, whose text the error carries.
Result<std::string> acquire_generic_service_ticket(Client& client, const std::string& url,
                                                   const std::string& method = "httpGet");

}  // namespace vix::vsphere
