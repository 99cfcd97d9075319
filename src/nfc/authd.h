// The way onto an ESXi host's NFC service (docs/reference/nfc.md §1 steps 2-3): authd's plain
// greeting on TCP 902, TLS on the same socket verified against the ticket's thumbprint, the
// SESSION / BANNER / THUMBPRINT_SHA2 / PROXY lines, then the NFC stream: the bare socket for
// `nbd` (both sides drop the authd TLS session), a second TLS session for `nbdssl`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "net/stream.h"

namespace vix::nfc {

struct AuthdOptions {
  std::string host;
  uint16_t port = 902;
  std::string session_id;  // the ticket's: a secret, never logged
  std::string service = "vpxa-nfc";
  bool data_tls = false;  // nbdssl: NFC inside a second TLS session
  // Who vouches for the host's certificate: thumbprints (the ticket's, else the inventory's),
  // else a CA bundle.
  std::vector<std::string> thumbprints;
  std::string ca_file;
  net::Deadline deadline = net::kNoDeadline;
  net::Deadline connect_deadline = net::kNoDeadline;  // the TCP connect alone (also <= deadline)
};

// The stream NFC runs on, or the failed step with the server's own words:
//   connect refused / unreachable            -> VIX_E_HOST_NETWORK_CONN_REFUSED-class (net)
//   not an authd greeting, a 5xx answer     -> VIX_E_CANNOT_CONNECT_TO_HOST ("... PROXY: 530 ...")
//   thumbprint mismatch                      -> VIX_E_CANNOT_CONNECT_TO_HOST (both digests shown)
// *unreachable (when given) is set when the TCP connect itself failed.
Result<std::unique_ptr<net::Stream>> authd_connect(const AuthdOptions& options,
                                                   bool* unreachable = nullptr);

}  // namespace vix::nfc
