// KeyRegistry: every key declaration of a program, for what needs them all at once: warnings
// for unknown vixfs.* keys (naming the nearest known one), a check of every value, and the dump
// of `vixfs --dump-config` / `vixdisk config`. The registry of the library and its programs is
// vix::config_registry() (src/vix/config_keys.h), built from each subsystem's list.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/config_keys.h"

namespace vix {

class KeyRegistry {
 public:
  explicit KeyRegistry(std::initializer_list<KeyList> lists);

  // Every declaration once, sorted by name (ignoring case).
  const std::vector<const ConfigKey*>& keys() const { return keys_; }

  // The declaration a key named `name` (any case) is read through: the key or its alias, the
  // pattern it is one of (vixfs.datastore.ds1), or for a per-server key the key it stands in for
  // (vixfs.server.lab.nbd.port -> vixfs.nbd.port). nullptr when nothing declares it.
  const ConfigKey* find(std::string_view name) const;
  // The known key closest to `name` in edit distance (ignoring case), "" when none is close.
  std::string nearest(std::string_view name) const;

  // "<origin>: unknown key K (did you mean N?)" for each vixfs.* key nothing declares, in the
  // order of the file. Other keys are Config::parse's to judge (VDDK's rules).
  std::vector<std::string> unknown_keys(const Config& config) const;
  // The error Config::get would give for each value its declaration refuses.
  std::vector<std::string> invalid_values(const Config& config) const;
  // One line per key, sorted: `name = "value"  # origin`, where origin is "default", "file:line"
  // or "command line". Every declaration has a line; a pattern has one per key set that matches.
  std::vector<std::string> dump(const Config& config) const;

 private:
  const ConfigKey* find_global(std::string_view name) const;  // not per-server
  std::vector<const ConfigKey*> keys_;
};

}  // namespace vix
