// Where a disk lives for nbd / nbdssl, and which protocol reaches it: with vixfs.nbd.server set,
// the open NBD protocol to that server (the export name: the datastore path, or the
// vixfs.nbd.export template; nbdssl's trust anchors); otherwise VMware's NFC to the ESXi host
// of the connection's VM, after a ticket from the server we logged in to (transports/nfc.h).
// Both take the vixDiskLib.nfc.* timeouts.
#include "transports/nbd.h"

#include <algorithm>

#include "common/log.h"
#include "transports/config_keys.h"
#include "transports/nfc.h"
#include "vsphere/inventory.h"
#include "vsphere/session.h"

namespace vix {

namespace {

// The host part of ConnectSpec::server, which may be "host", "host:port" or a URL.
std::string host_of(std::string server) {
  if (size_t p = server.find("://"); p != std::string::npos) server.erase(0, p + 3);
  if (size_t p = server.find('/'); p != std::string::npos) server.erase(p);
  if (size_t p = server.rfind('@'); p != std::string::npos) server.erase(0, p + 1);
  if (!server.empty() && server.front() == '[') {
    size_t close = server.find(']');
    return close == std::string::npos ? server.substr(1) : server.substr(1, close - 1);
  }
  // One colon is a port; more is a bare IPv6 address.
  if (std::count(server.begin(), server.end(), ':') == 1) server.erase(server.find(':'));
  return server;
}

bool same_host(const std::string& a, const std::string& b) {
  return !a.empty() && a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// A vixfs.server.NAME.nbd.* key of the connection's server is already in its global key's place
// (Config::scoped).
constexpr TextKey kServer{"vixfs.nbd.server", "",
                          "the NBD server: HOST:PORT, HOST or a socket path",
                          default_varies("the ESXi host of the VM")};
constexpr IntKey kPort{"vixfs.nbd.port", 1, 65535, 10809,
                       "TCP port when vixfs.nbd.server names a host without one"};
constexpr TextKey kExport{"vixfs.nbd.export", "",
                          "export name template ({datastore} {path} {file} {vm} {snapshot})",
                          default_varies("the datastore path")};
constexpr IntKey kConnections{"vixfs.nbd.connections", 1, 64, 4,
                              "connections per disk (when the server allows several)"};
constexpr IntKey kMaxRequestKB{"vixfs.nbd.maxRequestKB", 4, 32768, 2048,
                               "largest NBD request (KiB)"};
constexpr TextKey kThumbprint{"vixfs.nbd.thumbprint", "",
                              "nbdssl: the server certificate's SHA-1 or SHA-256 thumbprint"};
constexpr TextKey kCaFile{"vixfs.nbd.caFile", "", "nbdssl: PEM CA bundle for the server"};
constexpr TextKey kPskFile{"vixfs.nbd.pskFile", "", "nbdssl: TLS-PSK keys (psktool format)"};

constexpr IntKey kNfcConnections{"vixfs.nfc.connections", 1, 16, 2,
                                 "NFC: connections per disk, each with its own ticket"};
constexpr IntKey kNfcMaxRequestKB{"vixfs.nfc.maxRequestKB", 64, 16384, 2048,
                                  "NFC: largest read or write request (KiB)"};
constexpr IntKey kNfcBufferKB{"vixfs.nfc.bufferKB", 0, 16384, 0,
                              "NFC: session buffer asked of the host (KiB; 0: its default)"};
constexpr TextKey kNfcCompression{"vixfs.nfc.compression", "none",
                                  "NFC: compression asked for reads: none, zlib or skipz"};
constexpr TextKey kNfcCaFile{"vixfs.nfc.caFile", "",
                             "NFC: PEM CA bundle for hosts whose ticket has no thumbprint"};

// The inventory's capacity of the disk at `path` on the connection's VM (or snapshot); 0 when
// the inventory does not list it.
uint64_t inventory_capacity(const TransportContext& ctx, const std::string& path) {
  if (ctx.remote == nullptr) return 0;
  const vsphere::VirtualMachine* vm = ctx.remote->inventory().find_vm(ctx.remote->vm());
  if (vm == nullptr) return 0;
  const std::vector<vsphere::VirtualDisk>* disks = &vm->disks;
  if (!ctx.snapshot.empty()) {
    const vsphere::Snapshot* snap = vsphere::find_snapshot(vm->snapshots, ctx.snapshot);
    if (snap == nullptr) return 0;
    disks = &snap->disks;
  }
  for (const vsphere::VirtualDisk& d : *disks) {
    if (d.file_name() == path) return d.capacity_bytes;
  }
  return 0;
}

const vsphere::Host* host_of_vm(const TransportContext& ctx) {
  if (ctx.remote == nullptr) return nullptr;
  const vsphere::Inventory& inv = ctx.remote->inventory();
  const vsphere::VirtualMachine* vm = inv.find_vm(ctx.remote->vm());
  if (vm == nullptr) return nullptr;
  for (const vsphere::Host& h : inv.hosts) {
    if (h.moref == vm->host) return &h;
  }
  return nullptr;
}

const vsphere::Host* host_named(const TransportContext& ctx, const std::string& name) {
  if (ctx.remote == nullptr) return nullptr;
  for (const vsphere::Host& h : ctx.remote->inventory().hosts) {
    if (same_host(h.name, name)) return &h;
  }
  return nullptr;
}

Result<uint32_t> nfc_compression(const Config& config) {
  const std::string c = config.get(kNfcCompression);
  if (c == "none" || c.empty()) return 0u;
  if (c == "zlib") return 1u;
  if (c == "skipz") return 3u;
  if (c == "fastlz") {
    return fail(VIX_E_INVALID_ARG, std::string(kNfcCompression.name) +
                                       " = fastlz: no Debian library provides FastLZ; use zlib "
                                       "or skipz");
  }
  return fail(VIX_E_INVALID_ARG,
              std::string(kNfcCompression.name) + " = " + c + ": expected none, zlib or skipz");
}

// NFC to the VM's host: a ticket per connection from the server we logged in to.
Result<std::unique_ptr<BlockDevice>> open_over_nfc(const TransportContext& ctx,
                                                   const std::string& path, uint32_t flags,
                                                   bool tls) {
  const std::string mode = tls ? "nbdssl" : "nbd";
  RemoteSession* remote = ctx.remote;
  const vsphere::VirtualMachine* vm = remote->inventory().find_vm(remote->vm());
  if (vm == nullptr) {
    return fail(VIX_E_NOT_SUPPORTED, mode +
                                         ": NFC needs the VM the disk belongs to (vmxSpec "
                                         "moref=...), or set vixfs.nbd.server");
  }
  const Config& config = ctx.config;
  NfcSettings s;
  s.tls = tls;
  s.path = path;
  // Snapshot disks are never written, as everywhere else.
  s.read_only =
      ctx.read_only || (flags & VIXDISKLIB_FLAG_OPEN_READ_ONLY) != 0 || !ctx.snapshot.empty();
  vsphere::NfcTicketRequest request;
  request.vm = vm->moref;
  if (!s.read_only) {
    for (const vsphere::VirtualDisk& d : vm->disks) {
      if (d.file_name() == path) request.disk_key = d.key;
    }
    if (request.disk_key == 0) {
      return fail(VIX_E_NOT_SUPPORTED, mode + ": " + path + " is not a disk of " + vm->moref +
                                           ": a writable NFC open needs its device key");
    }
    request.host = vm->host;
    request.writable = true;
  }
  s.acquire_ticket = [remote, request] {
    return vsphere::acquire_nfc_ticket(remote->client(), request);
  };
  s.default_host = host_of(ctx.spec.server);
  s.port_override = static_cast<uint16_t>(ctx.spec.nfc_host_port);
  if (const vsphere::Host* host = host_of_vm(ctx);
      host != nullptr && !host->ssl_thumbprint.empty()) {
    s.host_thumbprints.push_back(host->ssl_thumbprint);
  }
  s.ca_file = config.get(kNfcCaFile);
  VIX_ASSIGN_OR_RETURN(int64_t conns, config.get(kNfcConnections));
  // One writer per disk: VDDK opens a writable disk on one connection, and a host may lock the
  // disk against a second.
  s.connections = s.read_only ? static_cast<unsigned>(conns) : 1;
  VIX_ASSIGN_OR_RETURN(int64_t max_kb, config.get(kNfcMaxRequestKB));
  s.max_request = static_cast<uint32_t>(max_kb * 1024);
  VIX_ASSIGN_OR_RETURN(int64_t buffer_kb, config.get(kNfcBufferKB));
  s.buffer_size = static_cast<uint32_t>(buffer_kb * 1024);
  VIX_ASSIGN_OR_RETURN(s.compression, nfc_compression(config));
  VIX_ASSIGN_OR_RETURN(s.accept_timeout_ms, config.get(kNfcAcceptTimeout));
  VIX_ASSIGN_OR_RETURN(s.request_timeout_ms, config.get(kNfcRequestTimeout));
  VIX_ASSIGN_OR_RETURN(s.read_timeout_ms, config.get(kNfcReadTimeout));
  VIX_ASSIGN_OR_RETURN(s.write_timeout_ms, config.get(kNfcWriteTimeout));
  s.inventory_capacity = inventory_capacity(ctx, path);
  log::info(mode + " " + path + ": VMware NFC to the VM's host (vixfs.nbd.server is not set)" +
            (s.read_only ? "" : ", read-write"));
  auto device = open_nfc_device(std::move(s));
  if (!device.ok()) return fail(device.error().code, mode + " (NFC): " + device.error().message);
  return device;
}

}  // namespace

Result<std::string> expand_export_template(const std::string& tmpl, const ExportNameParts& parts) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '{') {
      out += tmpl[i++];
      continue;
    }
    const size_t close = tmpl.find('}', i);
    if (close == std::string::npos) {
      return fail(VIX_E_INVALID_ARG, "vixfs.nbd.export = \"" + tmpl + "\": unclosed '{'");
    }
    const std::string name = tmpl.substr(i + 1, close - i - 1);
    if (name == "datastore") {
      out += parts.datastore;
    } else if (name == "path") {
      out += parts.path;
    } else if (name == "file") {
      out += parts.file;
    } else if (name == "vm") {
      out += parts.vm;
    } else if (name == "snapshot") {
      out += parts.snapshot;
    } else {
      return fail(VIX_E_INVALID_ARG, "vixfs.nbd.export = \"" + tmpl + "\": unknown {" + name +
                                         "} (known: {datastore} {path} {file} {vm} {snapshot})");
    }
    i = close + 1;
  }
  // NBD export names are at most 4096 bytes (proto.md).
  if (out.size() > 4096) {
    return fail(VIX_E_INVALID_ARG, "NBD export name longer than 4096 bytes: " + out.substr(0, 64));
  }
  return out;
}

Result<std::unique_ptr<BlockDevice>> NbdTransport::open(const TransportContext& ctx,
                                                        const std::string& path, uint32_t flags) {
  const std::string mode(name());
  if (path.empty()) return fail(VIX_E_INVALID_ARG, mode + ": empty disk path");
  const Config& config = ctx.config;
  NbdSettings s;
  s.tls = tls_;

  // Where: the configured server, else the ESXi host of the VM.
  VIX_ASSIGN_OR_RETURN(int64_t port, config.get(kPort));
  const std::string server = config.get(kServer);
  const vsphere::Host* host = nullptr;
  if (!server.empty()) {
    auto ep = net::parse_endpoint(server, static_cast<uint16_t>(port));
    if (!ep.ok()) {
      return fail(VIX_E_INVALID_ARG,
                  std::string(kServer.name) + " = " + server + ": " + ep.error().message);
    }
    s.endpoint = std::move(ep).value();
    host = host_named(ctx, s.endpoint.host);
  } else if (ctx.spec.is_local() || ctx.remote == nullptr) {
    return fail(VIX_E_NOT_SUPPORTED,
                mode +
                    ": not reachable: no NBD server (set vixfs.nbd.server) and no vSphere "
                    "connection for NFC");
  } else {
    return open_over_nfc(ctx, path, flags, tls_);
  }

  // What: the datastore path, or the template.
  ExportNameParts parts;
  parts.path = path;
  if (!ctx.spec.is_local()) {
    if (auto dsp = vsphere::parse_datastore_path(path)) {
      parts.datastore = dsp->datastore;
      parts.path = dsp->path;
    }
  }
  const size_t slash = parts.path.rfind('/');
  parts.file = slash == std::string::npos ? parts.path : parts.path.substr(slash + 1);
  parts.vm = ctx.remote ? ctx.remote->vm() : vm_moref_from_vmx_spec(ctx.spec.vmx_spec);
  parts.snapshot = ctx.snapshot;
  const std::string tmpl = config.get(kExport);
  if (tmpl.empty()) {
    s.export_name = path;
  } else {
    VIX_ASSIGN_OR_RETURN(s.export_name, expand_export_template(tmpl, parts));
  }

  // How long.
  VIX_ASSIGN_OR_RETURN(s.accept_timeout_ms, config.get(kNfcAcceptTimeout));
  VIX_ASSIGN_OR_RETURN(s.request_timeout_ms, config.get(kNfcRequestTimeout));
  VIX_ASSIGN_OR_RETURN(s.read_timeout_ms, config.get(kNfcReadTimeout));
  VIX_ASSIGN_OR_RETURN(s.write_timeout_ms, config.get(kNfcWriteTimeout));
  VIX_ASSIGN_OR_RETURN(int64_t conns, config.get(kConnections));
  s.connections = static_cast<unsigned>(conns);
  VIX_ASSIGN_OR_RETURN(int64_t max_kb, config.get(kMaxRequestKB));
  s.max_request = static_cast<uint32_t>(max_kb * 1024);
  s.read_only = ctx.read_only || (flags & VIXDISKLIB_FLAG_OPEN_READ_ONLY) != 0;
  s.fua = (flags & VIXDISKLIB_FLAG_OPEN_UNBUFFERED) != 0;
  s.min_capacity_bytes = inventory_capacity(ctx, path);

  // Whom to trust (nbdssl): the first source that applies, most specific first.
  if (tls_) {
    net::TlsOptions& t = s.tls_options;
    t.server_name = s.endpoint.host;
    const std::string pinned = config.get(kThumbprint);
    if (!pinned.empty()) {
      t.thumbprints.push_back(pinned);
    } else if (host != nullptr && !host->ssl_thumbprint.empty() &&
               same_host(host->name, s.endpoint.host)) {
      t.thumbprints.push_back(host->ssl_thumbprint);
    } else if (!ctx.spec.thumbprint.empty() && !ctx.spec.is_local() &&
               same_host(host_of(ctx.spec.server), s.endpoint.host)) {
      t.thumbprints.push_back(ctx.spec.thumbprint);
    } else {
      t.ca_file = config.get(kCaFile);
    }
    t.psk_file = config.get(kPskFile);
  }
  return open_nbd_device(s);
}

KeyList nbd_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {
      &kServer,      &kPort,           &kExport,   &kConnections,    &kMaxRequestKB,
      &kThumbprint,  &kCaFile,         &kPskFile,  &kNfcConnections, &kNfcMaxRequestKB,
      &kNfcBufferKB, &kNfcCompression, &kNfcCaFile};
  return kKeys;
}

std::unique_ptr<Transport> make_nbd_transport() {
  return std::make_unique<NbdTransport>(false);
}

std::unique_ptr<Transport> make_nbdssl_transport() {
  return std::make_unique<NbdTransport>(true);
}

}  // namespace vix
