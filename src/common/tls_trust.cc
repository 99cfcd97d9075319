#include "common/tls_trust.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>

namespace vix {

Result<std::string> normalize_thumbprint(std::string_view text) {
  std::string hex;
  for (char c : text) {
    if (c == ':' || c == ' ' || c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return fail(VIX_E_INVALID_ARG, "thumbprint '" + std::string(text) +
                                         "': not hexadecimal (expected SHA-1 or SHA-256, "
                                         "colon-separated hex)");
    }
    hex += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 40 && hex.size() != 64) {
    return fail(VIX_E_INVALID_ARG, "thumbprint '" + std::string(text) +
                                       "': " + std::to_string(hex.size() / 2) +
                                       " bytes, expected 20 (SHA-1) or 32 (SHA-256)");
  }
  return hex;
}

std::string format_thumbprint(const unsigned char* digest, size_t len) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < len; ++i) {
    if (i) out += ':';
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string display_thumbprint(const std::string& normalized_hex) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'A' + 10; };
  std::vector<unsigned char> bytes;
  for (size_t i = 0; i + 1 < normalized_hex.size(); i += 2) {
    bytes.push_back(
        static_cast<unsigned char>(nibble(normalized_hex[i]) * 16 + nibble(normalized_hex[i + 1])));
  }
  return format_thumbprint(bytes.data(), bytes.size());
}

PresentedThumbprints thumbprints_of(X509* certificate) {
  PresentedThumbprints out;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(certificate, EVP_sha1(), md, &len) == 1) out.sha1 = format_thumbprint(md, len);
  if (X509_digest(certificate, EVP_sha256(), md, &len) == 1) {
    out.sha256 = format_thumbprint(md, len);
  }
  return out;
}

bool pin_matches(const std::vector<std::string>& pins, const PresentedThumbprints& presented) {
  auto bare = [](const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c != ':') out += c;
    }
    return out;
  };
  const std::string have1 = bare(presented.sha1), have256 = bare(presented.sha256);
  return std::any_of(pins.begin(), pins.end(), [&](const std::string& want) {
    return !want.empty() && (want == have1 || want == have256);
  });
}

Error thumbprint_mismatch(const std::string& who, const PresentedThumbprints& presented,
                          const std::string& expected_display) {
  return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
              who + ": TLS certificate thumbprint mismatch: the server presented SHA-1 " +
                  presented.sha1 + " (SHA-256 " + presented.sha256 + "), expected " +
                  expected_display);
}

}  // namespace vix
