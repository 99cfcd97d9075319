#include "vix/config_keys.h"

#include "transports/config_keys.h"
#include "vsphere/session.h"

namespace vix {

namespace {

constexpr const ConfigKey* kDaemonKeys[] = {&kFuseReadAheadKB, &kFuseThreads, &kInventoryTtl};

}  // namespace

const KeyRegistry& config_registry() {
  // A function-local static: built on first use, after every constant it points to exists.
  static const KeyRegistry registry{
      common_config_keys(),  session_config_keys(),   transport_config_keys(),
      library_config_keys(), readahead_config_keys(), KeyList(kDaemonKeys),
  };
  return registry;
}

Result<ConfigReport> config_report(const std::string& config_file,
                                   const std::function<void(Config&)>& adjust) {
  ConfigReport report;
  Config config;
  if (!config_file.empty()) {
    VIX_ASSIGN_OR_RETURN(config, Config::load_file(config_file, &report.warnings));
  }
  if (adjust) adjust(config);
  const KeyRegistry& registry = config_registry();
  for (std::string& w : registry.unknown_keys(config)) report.warnings.push_back(std::move(w));
  report.errors = registry.invalid_values(config);
  report.lines = registry.dump(config);
  return report;
}

}  // namespace vix
