// TLS over a net::Stream through OpenSSL, TLS 1.2 or later: nbdssl after NBD_OPT_STARTTLS, and
// NFC's two sessions (authd, then nbdssl's data).
// The peer is trusted by a pinned thumbprint of its leaf certificate, by a CA bundle, or by a
// pre-shared key; with none of those the upgrade is refused before any byte is sent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "net/stream.h"

namespace vix::net {

struct TlsOptions {
  // Acceptable thumbprints (SHA-1 or SHA-256, colon-separated hex, any case), tried as one set:
  // the config's vixfs.nbd.thumbprint, the host's sslThumbprint, the connection's thumbPrint.
  std::vector<std::string> thumbprints;
  std::string ca_file;      // vixfs.nbd.caFile: chain and host-name verification against it
  std::string psk_file;     // vixfs.nbd.pskFile: nbdkit/gnutls psktool format "identity:hexkey"
  std::string server_name;  // SNI and the name checked with ca_file (the endpoint's host)
  // Who speaks, in every message ("nbdssl 127.0.0.1:10809: ..."), and the keys a user sets to
  // give the trust anchors, named when none is set or the CA bundle fails.
  std::string label = "nbdssl";
  std::string thumbprint_key = "vixfs.nbd.thumbprint";
  std::string ca_key = "vixfs.nbd.caFile";
  std::string psk_key = "vixfs.nbd.pskFile";  // "" where no pre-shared key can be set
};

// Runs the TLS handshake over `plain` (whose socket it takes over). A thumbprint mismatch fails
// with VIX_E_CANNOT_CONNECT_TO_HOST and a message showing the presented SHA-1 and SHA-256
// (as vsphere::PeerCheck::mismatch_error words it); no trust anchor at all is VIX_E_INVALID_ARG.
// The checks start_tls makes before any byte is sent (a trust anchor is set, thumbprints parse,
// the PSK file reads), for callers that want to fail before connecting at all.
Result<void> check_tls_options(const TlsOptions& options);

// release_fd() of the stream start_tls returns drops the TLS session without a close_notify and
// hands the socket over in plain text: NFC's `nbd` mode continues raw after authd that way.
Result<std::unique_ptr<Stream>> start_tls(std::unique_ptr<Stream> plain, const TlsOptions& options,
                                          Deadline deadline);

}  // namespace vix::net
