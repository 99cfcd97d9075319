// How vixfs trusts a vSphere server over libcurl: by a pinned thumbprint of its leaf certificate
// (SHA-1 as vSphere prints it, or SHA-256), else by a CA bundle, else by the system store. Never
// unverified. Shared by the SOAP session and the https transport so both trust the same peer.
#pragma once

#include <curl/curl.h>

#include <string>

#include "common/result.h"
#include "common/tls_trust.h"

namespace vix::vsphere {

// The outcome of one handshake's check; lives as long as the curl handle it is installed on
// (a kept-alive connection's SSL_CTX keeps pointing at it).
struct PeerCheck {
  std::string expected;  // normalised hex (normalize_thumbprint); empty: no pin
  bool mismatch = false;
  PresentedThumbprints presented;

  // "<who>: TLS certificate thumbprint mismatch: the server presented SHA-1 .. (SHA-256 ..), ..."
  Error mismatch_error(const std::string& who, const std::string& expected_display) const;
};

// Sets CURLOPT_SSL_* on curl: the pin when check->expected is set (it replaces chain and name
// checks: vSphere hosts are usually self-signed), else full verification against ca_file or the
// system store.
Result<void> configure_peer_verification(CURL* curl, PeerCheck* check, const std::string& ca_file);

}  // namespace vix::vsphere
