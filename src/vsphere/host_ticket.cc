#include "vsphere/host_ticket.h"

#include <arpa/inet.h>

#include "vsphere/client.h"
#include "vsphere/client_internal.h"
#include "vsphere/xml.h"

namespace vix::vsphere {

namespace {

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// The vnic's IP address: vmk0 first, else the first vnic that has one.
std::string management_ip(const pugi::xml_node& vnics) {
  std::string first;
  for (pugi::xml_node n = vnics.first_child(); n; n = n.next_sibling()) {
    if (n.type() != pugi::node_element) continue;
    std::string ip = child_text(child(child(n, "spec"), "ip"), "ipAddress");
    if (ip.empty()) continue;
    if (child_text(n, "device") == "vmk0") return ip;
    if (first.empty()) first = ip;
  }
  return first;
}

}  // namespace

Result<HostAccess> host_access(Client& client, const std::string& host_moref) {
  HostAccess h;
  bool found = false;
  std::string vnic_ip;
  VIX_TRY(client.retrieve(
      "<specSet>" +
          detail::prop_set("HostSystem", {"name", "summary.config.port",
                                          "summary.config.sslThumbprint", "config.network.vnic"}) +
          "<objectSet>" + moref_xml("obj", "HostSystem", host_moref) +
          "<skip>false</skip></objectSet></specSet>",
      [&](const ObjectContent& oc) -> Result<void> {
        found = true;
        h.name = oc.find("name").child_value();
        h.ssl_thumbprint = oc.find("summary.config.sslThumbprint").child_value();
        if (pugi::xml_node port = oc.find("summary.config.port")) {
          VIX_ASSIGN_OR_RETURN(int64_t p, parse_int(port.child_value(), "summary.config.port"));
          if (p <= 0 || p > 65535) {
            return fail(VIX_E_INVALID_XML, "HostSystem " + host_moref + ": summary.config.port " +
                                               std::to_string(p) + " out of range");
          }
          h.port = static_cast<uint16_t>(p);
        }
        vnic_ip = management_ip(oc.find("config.network.vnic"));
        return ok();
      }));
  if (!found) {
    return fail(VIX_E_OBJECT_NOT_FOUND, "HostSystem " + host_moref + ": not in the inventory");
  }
  if (is_ip_literal(h.name)) {
    h.address = h.name;
  } else if (!vnic_ip.empty()) {
    h.address = vnic_ip;
  } else {
    h.address = h.name;
  }
  if (h.address.empty()) {
    return fail(VIX_E_HOST_SERVER_NOT_FOUND, "HostSystem " + host_moref + ": no name or address");
  }
  return h;
}

Result<std::string> acquire_generic_service_ticket(Client& client, const std::string& url,
                                                   const std::string& method) {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, client.service_content());
  auto response = client.call("AcquireGenericServiceTicket", {"SessionManager", sc.session_manager},
                              "<spec xsi:type=\"SessionManagerHttpServiceRequestSpec\">" +
                                  text_xml("method", method) + text_xml("url", url) + "</spec>");
  if (!response.ok()) {
    return fail(response.error().code,
                "AcquireGenericServiceTicket (" + method + "): " + response.error().message);
  }
  std::string id = child_text(child(response->body, "returnval"), "id");
  if (id.empty()) {
    return fail(VIX_E_INVALID_XML, "AcquireGenericServiceTicket: the ticket has no id");
  }
  return id;
}

}  // namespace vix::vsphere
