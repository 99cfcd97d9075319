#include "net/tls_psk.h"

#include <openssl/crypto.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace vix::net {

namespace {

// A key file is a few lines; anything larger is not one.
constexpr size_t kMaxPskFileBytes = 64 * 1024;
// What OpenSSL's PSK callbacks can carry.
constexpr size_t kMaxKeyBytes = 256;
constexpr size_t kMaxIdentityBytes = 128;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

PskEntry::~PskEntry() {
  if (!key.empty()) OPENSSL_cleanse(key.data(), key.size());
}

Result<PskEntry> read_psk_file(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return fail(VIX_E_INVALID_ARG, "nbdssl: vixfs.nbd.pskFile " + path + ": " + why);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return fail(err == ENOENT ? VIX_E_FILE_NOT_FOUND : VIX_E_FILE_ACCESS_ERROR,
                "nbdssl: vixfs.nbd.pskFile " + path + ": " + std::strerror(err));
  }
  std::string text(kMaxPskFileBytes + 1, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  if (text.size() > kMaxPskFileBytes) return bad("larger than 64 KiB: not a PSK file");

  size_t start = 0;
  int line_no = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::string where = "line " + std::to_string(line_no) + ": ";
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      OPENSSL_cleanse(line.data(), line.size());
      return bad(where + "expected identity:hexkey");
    }
    PskEntry entry;
    entry.identity = line.substr(0, colon);
    if (entry.identity.empty()) return bad(where + "empty identity");
    if (entry.identity.size() > kMaxIdentityBytes) return bad(where + "identity too long");
    size_t hex_len = line.size() - colon - 1;
    if (hex_len == 0 || hex_len % 2 != 0 || hex_len / 2 > kMaxKeyBytes) {
      OPENSSL_cleanse(line.data(), line.size());
      return bad(where + "the key must be an even number of hex digits, at most " +
                 std::to_string(kMaxKeyBytes) + " bytes");
    }
    entry.key.reserve(hex_len / 2);
    for (size_t i = colon + 1; i < line.size(); i += 2) {
      int hi = hex_value(line[i]), lo = hex_value(line[i + 1]);
      if (hi < 0 || lo < 0) {
        OPENSSL_cleanse(line.data(), line.size());
        return bad(where + "the key is not hexadecimal");
      }
      entry.key.push_back(static_cast<unsigned char>(hi * 16 + lo));
    }
    OPENSSL_cleanse(line.data(), line.size());
    OPENSSL_cleanse(text.data(), text.size());
    return entry;
  }
  return bad("no identity:hexkey line");
}

}  // namespace vix::net
