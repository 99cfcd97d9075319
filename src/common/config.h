// Config: VDDK's config-file syntax (`name = "value"`, `#` comments) with every key DESIGN.md
// lists. Unknown keys are warnings; a malformed line is an error naming file and line.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace vix {

class Config {
 public:
  // Parses text; `origin` names the file in messages. Warnings (unknown keys, ignored keys such as
  // vixDiskLib.linuxSSL.verifyCertificates=0) are appended to *warnings.
  static Result<Config> parse(const std::string& text, const std::string& origin,
                              std::vector<std::string>* warnings);
  static Result<Config> load_file(const std::string& path, std::vector<std::string>* warnings);

  bool has(const std::string& key) const;
  std::string get(const std::string& key, const std::string& fallback = "") const;
  // Integer value, or fallback when absent; a non-integer value is an error naming the key.
  Result<int64_t> get_int(const std::string& key, int64_t fallback) const;
  // Same, and a value outside [lo, hi] is an error naming the key, the value and the range.
  Result<int64_t> get_int_in(const std::string& key, int64_t fallback, int64_t lo,
                             int64_t hi) const;
  // First key of `keys` that is set (for alternate spellings such as ReadTimeoutsMs).
  Result<int64_t> get_int_any(const std::vector<std::string>& keys, int64_t fallback) const;
  void set(const std::string& key, const std::string& value);  // command-line overrides
  // What a connection to the config's server ALIAS sees: its vixfs.server.ALIAS.nbd.* and
  // .datastore.* keys in place of vixfs.nbd.* and vixfs.datastore.*.
  Config scoped(const std::string& server_alias) const;
  // Every ALIAS that has a vixfs.server.ALIAS.url key, sorted.
  std::vector<std::string> server_aliases() const;
  const std::map<std::string, std::string>& values() const { return values_; }

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace vix
