// nbdkit's --tls-psk file (gnutls psktool's format): lines "identity:hexkey". The client uses the
// first entry.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace vix::net {

struct PskEntry {
  std::string identity;
  std::vector<unsigned char> key;
  PskEntry() = default;
  PskEntry(PskEntry&&) = default;
  PskEntry& operator=(PskEntry&&) = default;
  ~PskEntry();  // wipes the key
};

Result<PskEntry> read_psk_file(const std::string& path);

}  // namespace vix::net
