// vixdisk doctor: what a backup from this host would meet on a server, before any work: the
// server's product and build, the TLS certificate it presents, the privileges the session holds
// for every operation (one HasPrivilegeOnEntities call: vsphere/privileges.h), and which transport
// modes can reach the disks from here (NFC port of each host, datastores mounted locally, LUNs of
// raw device mappings, the hot-add proxy VM, https).
#include <fcntl.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/tls_trust.h"
#include "net/stream.h"
#include "tools/cli.h"
#include "transports/hotadd.h"
#include "transports/san.h"
#include "vix/library.h"
#include "vsphere/client.h"
#include "vsphere/privileges.h"
#include "vsphere/xml.h"

namespace vixdisk {

namespace {

namespace vs = vix::vsphere;

// Exit codes of doctor beyond cli.h's (documented in man/vixdisk.1).
constexpr int kExitPrivilegesMissing = 5;  // the session lacks a privilege an operation needs
constexpr int kExitNoTransport = 6;        // no transport mode can reach the disks from here

constexpr int kProbeTimeoutMs = 3000;  // each TCP or TLS probe

// One line of the "transports" part: a mode, what was looked at, whether it can work.
struct Probe {
  std::string mode;
  std::string target;
  bool ok = false;
  std::string detail;
};

struct About {
  std::string full_name, version, build, api_type, api_version;
};

vix::Result<About> read_about(vs::Client& client) {
  VIX_ASSIGN_OR_RETURN(vs::SoapResponse r, client.call("RetrieveServiceContent",
                                                       {"ServiceInstance", "ServiceInstance"}, ""));
  pugi::xml_node about = vs::child(vs::child(r.body, "returnval"), "about");
  if (!about) return vix::fail(VIX_E_INVALID_XML, "RetrieveServiceContent: no about");
  return About{vs::child_text(about, "fullName"), vs::child_text(about, "version"),
               vs::child_text(about, "build"), vs::child_text(about, "apiType"),
               vs::child_text(about, "apiVersion")};
}

// "host", "https://host:port/sdk", "host:port" -> the endpoint of the server's HTTPS port.
vix::Result<vix::net::Endpoint> https_endpoint(const vix::ConnectSpec& spec) {
  std::string text = spec.server;
  if (auto p = text.find("://"); p != std::string::npos) text.erase(0, p + 3);
  if (auto p = text.find('/'); p != std::string::npos) text.erase(p);
  return vix::net::parse_endpoint(text, spec.port ? static_cast<uint16_t>(spec.port) : 443);
}

// A TCP connection within the probe timeout; "" when it connects, else why not.
std::string tcp_probe(const vix::net::Endpoint& ep) {
  auto s = vix::net::connect_stream(ep, vix::net::deadline_after_ms(kProbeTimeoutMs));
  return s.ok() ? "" : s.error().message;
}

// The certificate the server presents (no trust decision: this only looks).
vix::Result<vix::PresentedThumbprints> presented_certificate(const vix::net::Endpoint& ep) {
  VIX_ASSIGN_OR_RETURN(std::unique_ptr<vix::net::Stream> stream,
                       vix::net::connect_stream(ep, vix::net::deadline_after_ms(kProbeTimeoutMs)));
  // The stream's socket is non-blocking (its I/O waits on deadlines); OpenSSL here blocks, bounded
  // by the socket timeouts.
  fcntl(stream->fd(), F_SETFL, fcntl(stream->fd(), F_GETFL) & ~O_NONBLOCK);
  timeval tv{kProbeTimeoutMs / 1000, 0};
  setsockopt(stream->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(stream->fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return vix::fail(VIX_E_CANNOT_CONNECT_TO_HOST, "TLS: cannot create a context");
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  if (!ssl || SSL_set_fd(ssl.get(), stream->fd()) != 1) {
    return vix::fail(VIX_E_CANNOT_CONNECT_TO_HOST, "TLS: cannot set up a session");
  }
  if (!ep.host.empty()) SSL_set_tlsext_host_name(ssl.get(), ep.host.c_str());
  if (SSL_connect(ssl.get()) != 1) {
    return vix::fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                     ep.display() + ": TLS handshake failed (not an HTTPS server?)");
  }
  X509* cert = SSL_get1_peer_certificate(ssl.get());
  if (cert == nullptr) {
    return vix::fail(VIX_E_CANNOT_CONNECT_TO_HOST, ep.display() + ": no certificate presented");
  }
  vix::PresentedThumbprints t = vix::thumbprints_of(cert);
  X509_free(cert);
  SSL_shutdown(ssl.get());
  return t;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The transports' own keys, read by name with the defaults their files declare
// (src/transports/{file,san,hotadd,nbd}.cc).
// *proxy_vm receives the hot-add proxy VM's moRef when one is found.
std::vector<Probe> transport_probes(const vix::Config& config, const vs::Inventory& inv,
                                    const std::vector<const vs::VirtualMachine*>& vms, int nfc_port,
                                    std::string* proxy_vm) {
  std::vector<Probe> out;
  out.push_back(
      {"https", "vCenter/ESXi SOAP and /folder", true, "reachable (logged in)"});  // first

  if (std::string nbd = config.get("vixfs.nbd.server", ""); !nbd.empty()) {
    auto ep = vix::net::parse_endpoint(nbd, 10809);
    std::string why = ep.ok() ? tcp_probe(*ep) : ep.error().message;
    out.push_back({"nbd", "vixfs.nbd.server " + nbd, why.empty(), why.empty() ? "reachable" : why});
  } else {
    // The hosts of the VMs looked at (every host when none has one).
    std::set<std::string> wanted;
    for (const vs::VirtualMachine* vm : vms) {
      if (!vm->host.empty()) wanted.insert(vm->host);
    }
    for (const vs::Host& h : inv.hosts) {
      if (!wanted.empty() && !wanted.count(h.moref)) continue;
      vix::net::Endpoint ep{h.name, static_cast<uint16_t>(nfc_port), ""};
      std::string why = tcp_probe(ep);
      out.push_back(
          {"nbd", h.moref + " NFC", why.empty(), why.empty() ? ep.display() + " reachable" : why});
    }
  }

  for (const vs::Datastore& ds : inv.datastores) {
    const std::string key = "vixfs.datastore." + ds.name;
    std::string dir = config.get(key, "");
    std::string detail;
    bool ok = false;
    if (!dir.empty()) {
      ok = is_dir(dir);
      detail = (ok ? "mounted at " : "mapped by " + key + " to a missing folder ") + dir;
    } else {
      dir = ds.url;
      if (dir.rfind("ds://", 0) == 0) dir.erase(0, 5);
      ok = !dir.empty() && dir.front() == '/' && is_dir(dir);
      detail = ok ? "mounted at " + dir
                  : "not mounted on this host (url " + ds.url + "; map it with " + key + ")";
    }
    out.push_back({"file", "datastore " + ds.name + " (" + ds.moref + ")", ok, detail});
  }

  const std::string dev_root = config.get("vixfs.san.devRoot", "/dev");
  auto filter = vix::SanDeviceFilter::from_config(config);
  for (const vs::VirtualMachine* vm : vms) {
    for (const vs::VirtualDisk& d : vm->disks) {
      if (d.chain.empty() || d.chain[0].lun_uuid.empty()) continue;
      auto naa = vix::naa_from_lun_uuid(d.chain[0].lun_uuid);
      Probe p{"san", vm->moref + " " + d.slot_name() + " (LUN " + d.chain[0].lun_uuid + ")", false,
              "no NAA name"};
      if (naa) {
        p.detail = "no device of NAA " + *naa + " under " + dev_root;
        for (const std::string& link : vix::san_device_candidates(dev_root, *naa)) {
          char node[4096];
          if (realpath(link.c_str(), node) == nullptr) continue;
          std::string why;
          p.ok = filter.allows(link, node, &why);
          p.detail = p.ok ? "device " + link + " -> " + node : why;
          break;
        }
      }
      out.push_back(p);
    }
  }

  bool any_rdm = false;
  for (const Probe& p : out) any_rdm = any_rdm || p.mode == "san";
  if (!any_rdm) out.push_back({"san", "raw device mappings", false, "none among the VMs"});

  std::string proxy = config.get("vixfs.hotadd.proxyVm", "");
  Probe hot{"hotadd", "proxy VM", false, ""};
  if (!proxy.empty()) {
    hot.ok = inv.find_vm(proxy) != nullptr;
    hot.detail = "vixfs.hotadd.proxyVm = " + proxy + (hot.ok ? "" : ": no such VM");
  } else {
    const std::string file =
        config.get("vixfs.hotadd.productUuidFile", "/sys/class/dmi/id/product_uuid");
    std::ifstream in(file);
    std::string product;
    if (!in || !std::getline(in, product)) {
      hot.detail = "this host's BIOS uuid is unknown (" + file + " unreadable)";
    } else {
      hot.detail = "this host (BIOS uuid " + product + ") is not a VM of this server";
      for (const vs::VirtualMachine& vm : inv.vms) {
        if (vix::hotadd::bios_uuid_matches(product, vm.uuid)) {
          hot.ok = true;
          hot.detail = "this host is " + vm.moref + " (" + vm.name + ")";
          proxy = vm.moref;
          break;
        }
      }
    }
  }
  if (hot.ok) *proxy_vm = proxy;
  out.push_back(hot);
  return out;
}

}  // namespace

int cmd_doctor(const std::vector<std::string>& args) {
  std::string error;
  std::vector<OptionSpec> options = server_option_specs();
  options.push_back({"json", false, 0});
  options.push_back({"nfc-port", true, 0});
  auto parsed = parse_args(args, options, &error);
  if (!parsed) return usage_error(error);
  vix::ConnectSpec spec;
  if (!server_spec(*parsed, &spec, &error)) return usage_error("doctor " + error);
  int nfc_port = 902;
  if (parsed->has("nfc-port")) {
    const std::string p = parsed->get("nfc-port");
    char* end = nullptr;
    long v = strtol(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || v < 1 || v > 65535) {
      return usage_error("--nfc-port " + p + ": expected 1..65535");
    }
    nfc_port = static_cast<int>(v);
  }
  const bool json = parsed->has("json");

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  auto server = server_login(spec);
  if (!server.ok()) return vix_error("login " + spec.server, server.error());
  vs::Client& client = (*server)->client();
  std::shared_ptr<const vs::Inventory> inv = (*server)->inventory();

  std::vector<const vs::VirtualMachine*> vms;
  for (const std::string& wanted : parsed->positional) {
    const vs::VirtualMachine* vm = find_vm(*inv, wanted, &error);
    if (!vm) return usage_error(error);
    vms.push_back(vm);
  }
  if (parsed->positional.empty()) {
    for (const vs::VirtualMachine& vm : inv->vms) vms.push_back(&vm);
  }

  auto about = read_about(client);
  if (!about.ok()) return vix_error("server version", about.error());
  auto ep = https_endpoint(spec);
  if (!ep.ok()) return vix_error("server address", ep.error());
  auto cert = presented_certificate(*ep);

  const vix::Config config = vix::Library::get()->config().scoped(
      spec.config_scope.empty() ? spec.server : spec.config_scope);
  std::string proxy;
  std::vector<Probe> probes = transport_probes(config, *inv, vms, nfc_port, &proxy);

  // Hot-add needs its privileges on the proxy VM and space on the datastores: checked only when
  // this host is a proxy VM, so that a host that will not hot-add is not told it lacks them.
  std::vector<std::string> vm_refs, ds_refs;
  for (const auto* vm : vms) vm_refs.push_back(vm->moref);
  if (!proxy.empty()) {
    for (const auto& ds : inv->datastores) ds_refs.push_back(ds.moref);
  }
  std::vector<std::string> checked = vm_refs;
  if (!proxy.empty() && std::find(checked.begin(), checked.end(), proxy) == checked.end()) {
    checked.push_back(proxy);
  }
  auto table = vs::check_privileges(client, checked, ds_refs);
  if (!table.ok()) return vix_error("privileges", table.error());

  // Rows: privilege × entity × granted ("?" when the server did not answer).
  struct Row {
    std::string operation, privilege, entity, granted;
  };
  std::vector<Row> rows;
  std::vector<vs::MissingPrivilege> missing;
  std::set<std::string> seen_missing;
  for (const vs::PrivilegeNeed& n : vs::privilege_needs()) {
    const bool hotadd = std::string_view(n.operation) == "hotadd";
    std::vector<std::string> entities = n.scope == vs::PrivilegeScope::kRoot
                                            ? std::vector<std::string>{table->root_folder()}
                                        : n.scope == vs::PrivilegeScope::kDatastore ? ds_refs
                                        : !hotadd                                   ? vm_refs
                                        : proxy.empty() ? std::vector<std::string>{}
                                                        : std::vector<std::string>{proxy};
    for (const std::string& e : entities) {
      std::string g = "?";
      if (auto a = table->answers().find(e); a != table->answers().end()) {
        if (auto p = a->second.find(n.privilege); p != a->second.end()) {
          g = p->second ? "yes" : "no";
        }
      }
      rows.push_back({n.operation, n.privilege, e, g});
      if (g == "no" &&
          seen_missing.insert(std::string(n.operation) + " " + n.privilege + " " + e).second) {
        missing.push_back({n.operation, n.privilege, e});
      }
    }
  }
  // https reads VM files through the datastore file service: it needs GetVmFiles on the VM.
  if (!vm_refs.empty()) {
    size_t denied = 0;
    for (const std::string& vm : vm_refs) denied += !table->missing("download", vm).empty();
    if (denied == vm_refs.size()) {
      probes.front().ok = false;
      probes.front().detail =
          "reachable, but the session lacks VirtualMachine.Provisioning.GetVmFiles on " +
          std::string(vm_refs.size() == 1 ? vm_refs.front() : "every VM");
    }
  }
  bool any_transport = false;
  for (const Probe& p : probes) any_transport = any_transport || p.ok;
  const int rc = !any_transport     ? kExitNoTransport
                 : !missing.empty() ? kExitPrivilegesMissing
                                    : kExitOk;
  const char* status = rc == kExitPrivilegesMissing ? "privileges-missing"
                       : rc == kExitNoTransport     ? "no-transport"
                                                    : "ok";

  if (json) {
    std::string out = "{\"server\":" + json_string(spec.server) +
                      ",\"endpoint\":" + json_string((*server)->endpoint()) +
                      ",\"product\":" + json_string(about->full_name) +
                      ",\"version\":" + json_string(about->version) +
                      ",\"build\":" + json_string(about->build) +
                      ",\"apiType\":" + json_string(about->api_type) +
                      ",\"apiVersion\":" + json_string(about->api_version) + ",\"tls\":";
    if (cert.ok()) {
      out +=
          "{\"sha1\":" + json_string(cert->sha1) + ",\"sha256\":" + json_string(cert->sha256) + "}";
    } else {
      out += "{\"error\":" + json_string(cert.error().message) + "}";
    }
    out += ",\"privileges\":{\"checked\":" + std::string(table->known() ? "true" : "false");
    if (!table->known()) out += ",\"reason\":" + json_string(table->unknown_reason());
    out += ",\"rootFolder\":" + json_string(table->root_folder()) + ",\"table\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      out += std::string(i ? "," : "") + "{\"operation\":" + json_string(r.operation) +
             ",\"privilege\":" + json_string(r.privilege) + ",\"entity\":" + json_string(r.entity) +
             ",\"granted\":" +
             (r.granted == "?"     ? "null"
              : r.granted == "yes" ? "true"
                                   : "false") +
             "}";
    }
    out += "],\"missing\":[";
    for (size_t i = 0; i < missing.size(); ++i) {
      out += std::string(i ? "," : "") + "{\"operation\":" + json_string(missing[i].operation) +
             ",\"privilege\":" + json_string(missing[i].privilege) +
             ",\"entity\":" + json_string(missing[i].entity) + "}";
    }
    out += "]},\"transports\":[";
    for (size_t i = 0; i < probes.size(); ++i) {
      const Probe& p = probes[i];
      out += std::string(i ? "," : "") + "{\"mode\":" + json_string(p.mode) +
             ",\"target\":" + json_string(p.target) + ",\"ok\":" + (p.ok ? "true" : "false") +
             ",\"detail\":" + json_string(p.detail) + "}";
    }
    out += "],\"status\":" + json_string(status) + "}\n";
    fputs(out.c_str(), stdout);
    return rc;
  }

  printf("server      %s (%s)\n", spec.server.c_str(), (*server)->endpoint().c_str());
  printf("product     %s\n", about->full_name.c_str());
  printf("version     %s build %s\n", about->version.c_str(), about->build.c_str());
  printf("api         %s %s (%s)\n", about->api_type.c_str(), about->api_version.c_str(),
         about->api_type == "VirtualCenter" ? "vCenter" : "ESXi");
  if (cert.ok()) {
    printf("tls         SHA-1 %s\n            SHA-256 %s\n", cert->sha1.c_str(),
           cert->sha256.c_str());
  } else {
    printf("tls         %s\n", cert.error().message.c_str());
  }
  printf("\nprivileges  (root folder %s)\n", table->root_folder().c_str());
  if (!table->known()) {
    printf("  not checked: %s\n", table->unknown_reason().c_str());
  } else {
    printf("  %-16s %-46s %-14s %s\n", "OPERATION", "PRIVILEGE", "ENTITY", "GRANTED");
    for (const Row& r : rows) {
      printf("  %-16s %-46s %-14s %s\n", r.operation.c_str(), r.privilege.c_str(), r.entity.c_str(),
             r.granted.c_str());
    }
  }
  if (!missing.empty()) {
    printf("\nmissing\n");
    for (const auto& m : missing) {
      printf("  %s: missing privilege %s on %s\n", m.operation.c_str(), m.privilege.c_str(),
             m.entity.c_str());
    }
  }
  printf("\ntransports\n");
  for (const Probe& p : probes) {
    printf("  %-7s %-3s %s: %s\n", p.mode.c_str(), p.ok ? "ok" : "no", p.target.c_str(),
           p.detail.c_str());
  }
  printf("\nstatus      %s\n", status);
  return rc;
}

}  // namespace vixdisk
