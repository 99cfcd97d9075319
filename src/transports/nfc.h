// VMware's NFC behind the "nbd" and "nbdssl" modes (src/nfc/): what VDDK's two LAN transports
// speak to the VM's ESXi host on port 902, after a ticket from vCenter. nbd.cc chooses NFC when
// vixfs.nbd.server is not set.
//
// nfc.cc works out the settings (tickets, trust, sizes, timeouts) from the config and the
// connection's inventory; nfc_device.cc is the BlockDevice over several NFC connections, each
// with its own ticket, re-established with a fresh ticket within the request budget.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/block_device.h"
#include "transports/transport.h"
#include "vsphere/nfc_ticket.h"

namespace vix {

struct NfcSettings {
  bool tls = false;
  std::string path;  // the datastore path of the disk file
  bool read_only = true;
  // A fresh ticket for each connection (NfcGetVmFiles, or NfcRandomAccessOpenDisk for writes).
  std::function<Result<vsphere::NfcTicket>()> acquire_ticket;
  std::string default_host;    // where to go when a ticket names no host (a standalone ESXi)
  uint16_t port_override = 0;  // ConnectParams.nfcHostPort
  std::vector<std::string> host_thumbprints;  // the inventory's, when the ticket has none
  std::string ca_file;                        // vixfs.nfc.caFile, when neither has one
  unsigned connections = 1;
  uint32_t max_request = 2u << 20;  // bytes per NFC read or write request
  uint32_t buffer_size = 0;         // OPEN_SESSION (0: the host's default)
  uint32_t compression = 0;         // asked of the host for reads
  int64_t accept_timeout_ms = 180000;
  int64_t request_timeout_ms = 180000;
  int64_t read_timeout_ms = 60000;
  int64_t write_timeout_ms = 600000;
  uint64_t inventory_capacity = 0;  // 0: unknown
  int64_t backoff_start_ms = 100;
  int64_t backoff_cap_ms = 5000;
};

Result<std::unique_ptr<BlockDevice>> open_nfc_device(NfcSettings settings);

}  // namespace vix
