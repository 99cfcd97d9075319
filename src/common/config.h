// Config: VDDK's config-file syntax (`name = "value"`, `#` comments) with every key vixfs.conf(5)
// lists. A malformed line is an error naming file and line; an unknown key that is not vixfs's
// is a warning here (vixfs.* keys are checked against every declaration by KeyRegistry, which
// this layer cannot see all of). Each value remembers where it was set, so that an error about
// it names that place.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config_keys.h"
#include "common/result.h"

namespace vix {

inline constexpr std::string_view kOriginCommandLine = "command line";
inline constexpr std::string_view kOriginDefault = "default";

struct Setting {
  std::string value;
  std::string origin;  // "vixfs.conf:12", "command line", "default"
  std::string name;    // as written: a per-server value keeps its vixfs.server.NAME.* name
};

class Config {
 public:
  // Parses text; `origin` names the file in messages. Warnings (unknown keys, ignored keys such as
  // vixDiskLib.linuxSSL.verifyCertificates=0) are appended to *warnings.
  static Result<Config> parse(const std::string& text, const std::string& origin,
                              std::vector<std::string>* warnings);
  static Result<Config> load_file(const std::string& path, std::vector<std::string>* warnings);

  // Reads through a declaration: its default when unset; a value that is not an integer or is
  // outside the declared range is an error "<origin>: <key> = <value>: expected <lo>..<hi>".
  Result<int64_t> get(const IntKey& key) const;
  // The same with the default the reader's context gives (the transport, the kind of mount).
  Result<int64_t> get(const IntKey& key, int64_t context_default) const;
  Result<bool> get(const FlagKey& key) const;
  std::string get(const TextKey& key) const;
  // One key of a family: vixfs.datastore.NAME with NAME = name_value; nullopt when unset.
  std::optional<std::string> get(const PatternKey& key, std::string_view name_value) const;

  // Raw access by name (any case), for code that handles keys generically.
  bool has(const std::string& key) const;
  std::string get(const std::string& key, const std::string& fallback = "") const;
  // The setting of `key` (any case), or of the declaration's alias; nullptr when unset.
  const Setting* find(std::string_view key) const;
  const Setting* find(const ConfigKey& key) const;

  // Overrides what the file says; `origin` is what dumps and errors name as the source.
  void set(const std::string& key, const std::string& value,
           std::string_view origin = kOriginCommandLine);
  // What a connection to the config's server ALIAS sees: its vixfs.server.ALIAS.nbd.* and
  // .datastore.* keys in place of vixfs.nbd.* and vixfs.datastore.*.
  Config scoped(const std::string& server_alias) const;
  // Every ALIAS that has a vixfs.server.ALIAS.url key, sorted.
  std::vector<std::string> server_aliases() const;
  const std::map<std::string, Setting>& settings() const { return settings_; }

 private:
  std::map<std::string, Setting> settings_;
};

// A value checked against its declaration: the integer, or the error Config::get reports.
Result<int64_t> checked_integer(const ConfigKey& key, const std::string& value,
                                const std::string& origin, const std::string& written_name);

}  // namespace vix
