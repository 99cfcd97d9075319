// Thumbprints of TLS peers, and the pin check every TLS client of vixfs makes the same way: the
// SOAP session and the https transport (through libcurl, vsphere/tls.h) and nbdssl (through
// OpenSSL, nbd/tls.h). vSphere and ESXi certificates are usually self-signed, so a pinned
// thumbprint of the leaf certificate is how a user says which server is the right one.
#pragma once

#include <openssl/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace vix {

// Upper-case hex without separators; an error unless it is 40 (SHA-1) or 64 (SHA-256) hex digits.
// Colons, spaces and dashes are ignored, any case is accepted.
Result<std::string> normalize_thumbprint(std::string_view text);
// Upper-case colon-separated hex, the way vSphere prints thumbprints.
std::string format_thumbprint(const unsigned char* digest, size_t len);
// normalize_thumbprint's output back in the colon-separated form.
std::string display_thumbprint(const std::string& normalized_hex);

// What a server presented, in the colon-separated form, for messages.
struct PresentedThumbprints {
  std::string sha1, sha256;
};
PresentedThumbprints thumbprints_of(X509* certificate);
// True when one of `pins` (normalised hex) is the SHA-1 or SHA-256 thumbprint presented.
bool pin_matches(const std::vector<std::string>& pins, const PresentedThumbprints& presented);
// "<who>: TLS certificate thumbprint mismatch: the server presented SHA-1 .. (SHA-256 ..),
// expected <expected_display>"
Error thumbprint_mismatch(const std::string& who, const PresentedThumbprints& presented,
                          const std::string& expected_display);

}  // namespace vix
