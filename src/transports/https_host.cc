#include "transports/https_host.h"

#include "vsphere/host_ticket.h"
#include "vsphere/inventory.h"

namespace vix {

Result<HttpsOptions> host_https_options(const TransportContext& ctx, const HttpsOptions& base) {
  RemoteSession* remote = ctx.remote;  // outlives the disk (a Connection outlives its Disks)
  const vsphere::VirtualMachine* vm = remote->inventory().find_vm(remote->vm());
  if (vm == nullptr) {
    return fail(VIX_E_OBJECT_NOT_FOUND, "no VM bound to the connection (vmxSpec moref=)");
  }
  if (vm->host.empty()) {
    return fail(VIX_E_OBJECT_NOT_FOUND, vm->moref + " reports no runtime.host");
  }
  VIX_ASSIGN_OR_RETURN(vsphere::HostAccess host, vsphere::host_access(remote->client(), vm->host));
  if (host.ssl_thumbprint.empty()) {
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                "host " + host.name + " (" + vm->host +
                    ") reports no summary.config.sslThumbprint to pin its certificate to");
  }
  HttpsOptions o = base;
  o.tls.thumbprint = host.ssl_thumbprint;
  o.tls.ca_file.clear();  // the pin is the trust
  const bool v6 = host.address.find(':') != std::string::npos;
  o.endpoint = "https://" + (v6 ? "[" + host.address + "]" : host.address) + ":" +
               std::to_string(host.port) + "/sdk";
  o.dc_path = "ha-datacenter";  // an ESXi host's one datacenter
  o.cookie.clear();
  o.renew_cookie = nullptr;
  o.acquire_ticket = [remote](const std::string& url) {
    return vsphere::acquire_generic_service_ticket(remote->client(), url, "httpGet");
  };
  return o;
}

}  // namespace vix
