#include "vsphere/tls.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "vsphere/http.h"

namespace vix::vsphere {

namespace {

// Replaces OpenSSL's chain verification: the peer is trusted iff its leaf certificate's digest
// equals the pinned thumbprint.
int pin_verify(X509_STORE_CTX* ctx, void* arg) {
  auto* check = static_cast<PeerCheck*>(arg);
  X509* leaf = X509_STORE_CTX_get0_cert(ctx);
  if (!leaf) {
    check->mismatch = true;
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  check->presented = thumbprints_of(leaf);
  if (!pin_matches({check->expected}, check->presented)) {
    check->mismatch = true;
    X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  X509_STORE_CTX_set_error(ctx, X509_V_OK);
  return 1;
}

CURLcode ssl_ctx_hook(CURL*, void* ssl_ctx, void* arg) {
  // No renegotiation: the pin was checked on the one handshake of this connection.
  SSL_CTX_set_options(static_cast<SSL_CTX*>(ssl_ctx), SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_cert_verify_callback(static_cast<SSL_CTX*>(ssl_ctx), pin_verify, arg);
  return CURLE_OK;
}

}  // namespace

Error PeerCheck::mismatch_error(const std::string& who, const std::string& expected_display) const {
  return thumbprint_mismatch(who, presented, expected_display);
}

Result<void> configure_peer_verification(CURL* curl, PeerCheck* check, const std::string& ca_file) {
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  if (!check->expected.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    // The pin replaces chain verification, so no CA bundle is needed: libcurl would otherwise
    // parse the whole system bundle on every new connection (14% of the daemon's CPU when the
    // https transport's prefetchers opened their connections).
    curl_easy_setopt(curl, CURLOPT_CAINFO, nullptr);
    curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, check);
    if (curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_hook) != CURLE_OK) {
      return fail(VIX_E_NOT_SUPPORTED,
                  "libcurl without OpenSSL: thumbprint verification is unavailable");
    }
  } else {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  }
  return ok();
}

}  // namespace vix::vsphere
