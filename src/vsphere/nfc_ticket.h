// Tickets for VMware's NFC protocol (what VDDK's nbd and nbdssl speak to ESXi port 902), asked of
// the NfcService managed object, which the public WSDL does not list
// (docs/reference/nfc.md §1). One ticket opens one NFC connection, once.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace vix::vsphere {

class Client;

// HostServiceTicket, as the server answers it.
struct NfcTicket {
  std::string host;            // the ESXi address to connect to ("" on a standalone ESXi)
  uint16_t port = 902;         //
  std::string ssl_thumbprint;  // SHA-1 of the host's certificate, "" when not given
  std::string service;         // vpxa-nfc
  std::string service_version;
  std::string session_id;  // single use; a secret: never logged
};

struct NfcTicketRequest {
  std::string vm;  // VirtualMachine moRef value
  // Disk-scoped tickets only: the VirtualDisk's device key and the host to reach it through.
  // With disk_key 0 the ticket is NfcGetVmFiles' read-only one for all of the VM's files.
  int32_t disk_key = 0;
  std::string host;
  bool writable = false;  // NfcRandomAccessOpenDisk (needs disk_key)
};

// Calls NfcGetVmFiles, NfcRandomAccessOpenReadonly or NfcRandomAccessOpenDisk on the server's
// NfcService ("nfcService" on vCenter; on an ESXi host "ha-nfc-service", then "ha-nfc": the
// public descriptions disagree). A server without the object answers with the SOAP fault, whose
// text the error carries; an answer without a session id is VIX_E_INVALID_XML.
Result<NfcTicket> acquire_nfc_ticket(Client& client, const NfcTicketRequest& request);

}  // namespace vix::vsphere
