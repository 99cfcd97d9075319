// The "nbd" and "nbdssl" transports. With vixfs.nbd.server set: a disk served by an NBD server
// (nbdkit, qemu-nbd, an nbdkit-vddk proxy) over the open NBD protocol (src/nbd/), plain or over
// TLS; otherwise VMware's NFC to the VM's ESXi host (transports/nfc.h).
//
// nbd.cc works out where the disk lives (endpoint, export name, trust anchors, timeouts) from the
// config and the connection's inventory; nbd_device.cc is the BlockDevice over nbd_pool.h's pool
// of NBD connections, which re-establishes broken ones within the request budget.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "nbd/connection.h"
#include "net/stream.h"
#include "net/tls.h"
#include "transports/transport.h"

namespace vix {

class NbdTransport final : public Transport {
 public:
  explicit NbdTransport(bool tls) : tls_(tls) {}
  std::string_view name() const override { return tls_ ? "nbdssl" : "nbd"; }
  Result<std::unique_ptr<BlockDevice>> open(const TransportContext& ctx, const std::string& path,
                                            uint32_t flags) override;

 private:
  bool tls_;
};

// Everything a device needs to (re)connect, resolved once at open.
struct NbdSettings {
  bool tls = false;
  net::Endpoint endpoint;
  std::string export_name;
  net::TlsOptions tls_options;
  // vixDiskLib.nfc.*: 0 means no limit.
  int64_t accept_timeout_ms = 180000;   // connect + handshake
  int64_t request_timeout_ms = 180000;  // the budget for re-establishing a broken connection
  int64_t read_timeout_ms = 60000;      // wait for one read's replies
  int64_t write_timeout_ms = 600000;    // wait for one write's (or flush's) replies
  unsigned connections = 4;             // used only when the server sets CAN_MULTI_CONN
  uint32_t max_request = 2u << 20;      // bytes per NBD request
  bool read_only = false;               // the connection or the open flags ask for it
  // VIXDISKLIB_FLAG_OPEN_UNBUFFERED: every write is durable when it returns (NBD FUA, or a FLUSH
  // after it on servers without FUA), as O_DIRECT|O_DSYNC would make it on a local disk.
  bool fua = false;
  uint64_t min_capacity_bytes = 0;  // the inventory's capacity of the disk (0: unknown)
  // Back-off between reconnect attempts: starts here, doubles, capped.
  int64_t backoff_start_ms = 100;
  int64_t backoff_cap_ms = 5000;
};

// Connects the first connection (handshake bounded by accept_timeout_ms), checks the export
// against the disk (size a multiple of 512, not smaller than min_capacity_bytes), then opens the
// rest of the pool when the server allows several connections.
Result<std::unique_ptr<BlockDevice>> open_nbd_device(const NbdSettings& settings);

// "{datastore}/{file}" with the disk's parts substituted; unknown {names} are an error.
struct ExportNameParts {
  std::string datastore, path, file, vm, snapshot;
};
Result<std::string> expand_export_template(const std::string& tmpl, const ExportNameParts& parts);

}  // namespace vix
