// The registry of every configuration key of the library and its programs, and the keys of the
// vixfs daemon. Each subsystem declares its keys in the file that reads them and hands them over
// as a list (KeyList): config_registry() calls those lists explicitly, so no key depends on
// static initialisation or on which object files a static link happens to pull in.
//
// The daemon's keys (src/fs) are declared here, below the daemon: every program that loads
// vixfs.conf (vixdisk, a VDDK client through libvixDiskLib) must know them, or it would warn
// about them as unknown, and this layer cannot see src/fs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/config_keys.h"
#include "common/config_registry.h"
#include "common/result.h"

namespace vix {

inline constexpr IntKey kFuseReadAheadKB{
    "vixfs.fuse.readAheadKB", 0, 1 << 20, 4096,
    "the kernel's read-ahead for the mount (KiB; 0 leaves the kernel's)"};
inline constexpr IntKey kFuseThreads{
    "vixfs.fuse.threads",
    1,
    256,
    16,
    "the most FUSE worker threads the daemon runs",
    default_varies("16 for servers; --local: the number of cores, at least 2")};
// Bounded so that the TTL in nanoseconds cannot overflow a steady_clock duration.
inline constexpr IntKey kInventoryTtl{"vixfs.inventory.ttlSeconds", 0, 2147483647, 30,
                                      "seconds the daemon serves an inventory before re-reading "
                                      "it (0: read once)"};

// The lists of the vix layer's files.
KeyList library_config_keys();    // library.cc
KeyList readahead_config_keys();  // readahead_config.cc

const KeyRegistry& config_registry();

// What `vixfs --dump-config` and `vixdisk config` print: the file (if any) as the library would
// load it, after `adjust` (a program's own settings).
struct ConfigReport {
  std::vector<std::string> lines;     // KeyRegistry::dump
  std::vector<std::string> warnings;  // the parser's and the unknown keys
  std::vector<std::string> errors;    // values their declarations refuse
};
Result<ConfigReport> config_report(const std::string& config_file,
                                   const std::function<void(Config&)>& adjust = nullptr);

}  // namespace vix
