// vixdisk config: every configuration key with its effective value and where it came from
// (default, FILE:LINE), as the library would load --config FILE. Mostly for checking a file:
// unknown keys are warned about with the nearest known name, refused values make it fail.
#include <cerrno>
#include <cstdio>
#include <string>

#include "tools/cli.h"
#include "vix/config_keys.h"

namespace vixdisk {

int cmd_config(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(args, {}, &error);
  if (!parsed) return usage_error(error);
  if (!parsed->positional.empty()) return usage_error("config takes no DISK");
  const GlobalOptions options = global_options(*parsed);
  auto report = vix::config_report(options.config_file);
  if (!report.ok()) return vix_error("config " + options.config_file, report.error());
  for (const std::string& w : report->warnings)
    fprintf(stderr, "vixdisk: warning: %s\n", w.c_str());
  for (const std::string& e : report->errors) fprintf(stderr, "vixdisk: %s\n", e.c_str());
  for (const std::string& line : report->lines) {
    if (printf("%s\n", line.c_str()) < 0) return io_error("stdout", errno);
  }
  if (fflush(stdout) != 0) return io_error("stdout", errno);
  return report->errors.empty() ? kExitOk : kExitVix;
}

}  // namespace vixdisk
