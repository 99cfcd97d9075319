// vixdisk: inspect, copy out, map, create and benchmark VMDK disks through the vixfs library
// (the C++ core under libvixDiskLib), in the spirit of VMware's vixDiskLibSample.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/cli.h"

namespace {

const char kUsage[] =
    "Usage: vixdisk [GLOBAL OPTIONS] COMMAND [DISK] [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  info DISK [--json]                       capacity, geometry, adapter, chain, ddb keys\n"
    "  cat DISK [-o FILE] [--offset N] [--length N]\n"
    "                                           raw bytes to stdout, or to FILE (sparse)\n"
    "  map DISK [--json]                        allocated extents (bytes and sectors)\n"
    "  create DISK --size SIZE [--type TYPE] [--adapter ide|buslogic|lsilogic] [--hw N]\n"
    "  create DISK --parent PARENT              new empty disk, or a delta child of PARENT\n"
    "  bench DISK [--block-size 1M] [--random-count N] [--json]\n"
    "                                           sequential MB/s and random 4 KiB IOPS\n"
    "  cleanup --server HOST [--port N] [--user U --password-file F] [--thumbprint HEX]\n"
    "          [--name ALIAS] [--json] [--dry-run]\n"
    "                                           detach disks and remove snapshots that killed\n"
    "                                           processes of this host left behind\n"
    "  backup VM DEST --server HOST [--user U --password-file F] [--thumbprint HEX]\n"
    "          [--quiesce] [--snapshot-name NAME]\n"
    "                                           snapshot VM, copy its disks sparse into DEST\n"
    "                                           with sha256 and backup.json, remove the snapshot\n"
    "  consolidate VM --server HOST [--user U --password-file F] [--thumbprint HEX]\n"
    "                                           ConsolidateVMDisks_Task for a VM that needs it\n"
    "  cbt status|enable|disable VM --server HOST [--user U --password-file F]\n"
    "          [--thumbprint HEX] [--json]\n"
    "                                           changed block tracking of VM and its disks'\n"
    "                                           changeIds; enable/disable reconfigure and stun\n"
    "  doctor [VM...] --server HOST [--user U --password-file F] [--thumbprint HEX]\n"
    "          [--nfc-port N] [--json]\n"
    "                                           server version, TLS thumbprint, privileges\n"
    "                                           (privilege x entity x granted) and the\n"
    "                                           transports that can work from this host\n"
    "  config [--config FILE]                   every configuration key, its value and\n"
    "                                           where it was set (default, FILE:LINE)\n"
    "\n"
    "TYPE: monolithicSparse (default), monolithicFlat, twoGbMaxExtentSparse,\n"
    "      twoGbMaxExtentFlat, streamOptimized. Sizes take K, M, G, T suffixes (x1024).\n"
    "\n"
    "Global options:\n"
    "  --config FILE       vixfs.conf to load (VDDK config syntax)\n"
    "  --transports MODES  colon-separated transport modes (default: the library's)\n"
    "  --single-link       open only the named link of a chain\n"
    "  --unbuffered        open with VIXDISKLIB_FLAG_OPEN_UNBUFFERED (O_DIRECT)\n"
    "  -v, --verbose       say what is being done on stderr\n"
    "  -h, --help          this text;  --version  the version\n"
    "\n"
    "Exit status: 0 ok, 1 usage error, 2 library (VixError) error, 3 output I/O error,\n"
    "4 backup interrupted by a signal (its snapshot removed), 5 doctor: a privilege is missing,\n"
    "6 doctor: no transport can reach the disks from this host (takes precedence over 5).\n";

bool is_global_value_option(const std::string& a) {
  return a == "--config" || a == "--transports";
}

}  // namespace

namespace vixdisk {
int cmd_doctor(const std::vector<std::string>& args);  // cmd_doctor.cc
}  // namespace vixdisk

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // The command is the first word that is neither an option nor a global option's value, so
  // global options may come before or after it.
  std::string command;
  std::vector<std::string> rest;
  bool seen_dashdash = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (command.empty() && !seen_dashdash && !a.empty() && a[0] == '-') {
      if (a == "-h" || a == "--help") {
        fputs(kUsage, stdout);
        return vixdisk::kExitOk;
      }
      if (a == "--version") {
        printf("vixdisk %s\n", VIXFS_VERSION);
        return vixdisk::kExitOk;
      }
      if (a == "--") {
        seen_dashdash = true;
        continue;
      }
      rest.push_back(a);
      if (is_global_value_option(a) && i + 1 < args.size()) rest.push_back(args[++i]);
      continue;
    }
    if (command.empty()) {
      command = a;
    } else {
      rest.push_back(a);
    }
  }
  if (command.empty()) {
    fputs(kUsage, stderr);
    return vixdisk::kExitUsage;
  }
  for (const auto& a : rest) {
    if (a == "-h" || a == "--help") {
      fputs(kUsage, stdout);
      return vixdisk::kExitOk;
    }
  }
  if (command == "help") {
    fputs(kUsage, stdout);
    return vixdisk::kExitOk;
  }
  if (command == "info") return vixdisk::cmd_info(rest);
  if (command == "cat") return vixdisk::cmd_cat(rest);
  if (command == "map") return vixdisk::cmd_map(rest);
  if (command == "create") return vixdisk::cmd_create(rest);
  if (command == "bench") return vixdisk::cmd_bench(rest);
  if (command == "cleanup") return vixdisk::cmd_cleanup(rest);
  if (command == "backup") return vixdisk::cmd_backup(rest);
  if (command == "consolidate") return vixdisk::cmd_consolidate(rest);
  if (command == "config") return vixdisk::cmd_config(rest);
  if (command == "doctor") return vixdisk::cmd_doctor(rest);
  if (command == "cbt") return vixdisk::cmd_cbt(rest);
  return vixdisk::usage_error("unknown command '" + command + "'");
}
