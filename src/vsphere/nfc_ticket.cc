#include "vsphere/nfc_ticket.h"

#include <vector>

#include "vsphere/client.h"
#include "vsphere/xml.h"

namespace vix::vsphere {

namespace {

Result<NfcTicket> parse_ticket(const SoapResponse& response, const std::string& method) {
  pugi::xml_node val = child(response.body, "returnval");
  NfcTicket t;
  t.host = child_text(val, "host");
  t.ssl_thumbprint = child_text(val, "sslThumbprint");
  t.service = child_text(val, "service");
  t.service_version = child_text(val, "serviceVersion");
  t.session_id = child_text(val, "sessionId");
  if (!val || t.session_id.empty()) {
    return fail(VIX_E_INVALID_XML, "vSphere " + method + ": the ticket has no sessionId");
  }
  if (pugi::xml_node port = child(val, "port")) {
    VIX_ASSIGN_OR_RETURN(int64_t p, parse_int(port.child_value(), method + " port"));
    if (p <= 0 || p > 65535) {
      return fail(VIX_E_INVALID_XML,
                  "vSphere " + method + ": ticket port " + std::to_string(p) + " out of range");
    }
    t.port = static_cast<uint16_t>(p);
  }
  if (t.service.empty()) t.service = "vpxa-nfc";
  return t;
}

}  // namespace

Result<NfcTicket> acquire_nfc_ticket(Client& client, const NfcTicketRequest& request) {
  if (request.writable && request.disk_key == 0) {
    return fail(VIX_E_INVALID_ARG, "NFC ticket for " + request.vm +
                                       ": a read-write ticket is disk-scoped: no disk key given");
  }
  std::string method = "NfcGetVmFiles";
  std::string body = moref_xml("vm", "VirtualMachine", request.vm);
  if (request.disk_key != 0) {
    method = request.writable ? "NfcRandomAccessOpenDisk" : "NfcRandomAccessOpenReadonly";
    body += "<diskDeviceKey>" + std::to_string(request.disk_key) + "</diskDeviceKey>" +
            moref_xml("hostForAccess", "HostSystem", request.host);
  }
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, client.service_content());
  std::vector<std::string> objects = {"nfcService"};
  if (sc.api_type == "HostAgent") objects = {"ha-nfc-service", "ha-nfc"};
  Error last = fail(VIX_E_NOT_SUPPORTED, "no NfcService");
  for (const std::string& object : objects) {
    auto response = client.call(method, {"NfcService", object}, body);
    if (response.ok()) return parse_ticket(*response, method);
    last = response.error();
    // Only "no such object" tries the next name; every other fault is the answer.
    if (last.code != VIX_E_OBJECT_NOT_FOUND && last.code != VIX_E_NOT_SUPPORTED) break;
  }
  return fail(last.code, "NFC ticket (" + method + " for " + request.vm + "): " + last.message);
}

}  // namespace vix::vsphere
