// Shared pieces of the vixdisk commands: argument parsing, sizes, error reporting with the exit
// codes the man page documents, and a Session that owns library -> connection -> disk.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "vix/connection.h"

namespace vixdisk {

// Exit codes (documented in man/vixdisk.1).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;        // bad command line, bad range
inline constexpr int kExitVix = 2;          // the library returned a VixError
inline constexpr int kExitIo = 3;           // writing the output (file, stdout) failed
inline constexpr int kExitInterrupted = 4;  // backup: stopped by a signal (snapshot removed)

inline constexpr uint64_t kMiB = 1024 * 1024;

struct OptionSpec {
  const char* name;  // long name without dashes
  bool takes_value;
  char short_name = 0;
};

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::set<std::string> flags;

  bool has(const std::string& name) const { return values.count(name) || flags.count(name); }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

// The options every command accepts, wherever they appear on the line.
const std::vector<OptionSpec>& global_option_specs();

// Parses the arguments after the command name against the command's options plus the global
// ones. Returns nullopt and sets *error on an unknown option or a missing value.
std::optional<ParsedArgs> parse_args(const std::vector<std::string>& args,
                                     const std::vector<OptionSpec>& command_options,
                                     std::string* error);

// --server, --port, --user, --password-file, --thumbprint, --name: the commands that talk to a
// vCenter or ESXi.
std::vector<OptionSpec> server_option_specs();
// Fills spec from those options; the password is --password-file's first line, else
// $VIXFS_PASSWORD (never the command line, where /proc/<pid>/cmdline would show it), read only
// when --user is given. False with *error set on a missing server, a bad port or no password.
bool server_spec(const ParsedArgs& args, vix::ConnectSpec* spec, std::string* error);

// Logs in to spec's server with the library's configuration (its vixfs.server.NAME section when
// --name or the server names one); Session::start must have initialised the library.
vix::Result<std::shared_ptr<vix::ServerSession>> server_login(const vix::ConnectSpec& spec);

// A VM of `inventory` by moRef, else by name when exactly one VM has it; null with *error set.
const vix::vsphere::VirtualMachine* find_vm(const vix::vsphere::Inventory& inventory,
                                            const std::string& wanted, std::string* error);

struct GlobalOptions {
  std::string config_file;
  std::string transports;
  bool single_link = false;
  bool unbuffered = false;
  bool verbose = false;
};
GlobalOptions global_options(const ParsedArgs& args);

// "4096", "64K", "1M", "10G", "2T" (binary multiples; "KiB"/"MB"-style spellings too).
std::optional<uint64_t> parse_size(std::string_view text);
std::string human_size(uint64_t bytes);

// Each prints one line to stderr ("vixdisk: ...") and returns the matching exit code.
int usage_error(const std::string& message);
int vix_error(const std::string& what, const vix::Error& error);
int io_error(const std::string& what, int errno_value);

// -v output; a no-op unless --verbose was given.
void set_verbose(bool on);
bool verbose();
void note(const std::string& message);

using vix::json_string;

// Library::init + Connection::connect (+ Connection::open), torn down in reverse order.
class Session {
 public:
  Session() = default;
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Returns kExitOk or the exit code of the failure (already reported).
  int start(const GlobalOptions& options, bool read_only);
  int open(const std::string& path, bool read_only);

  vix::Connection& connection() { return *connection_; }
  vix::Disk& disk() { return *disk_; }

 private:
  GlobalOptions options_;
  bool library_ = false;
  std::unique_ptr<vix::Connection> connection_;
  std::unique_ptr<vix::Disk> disk_;
};

// Walks a disk's allocated extents window by window, so a huge, fragmented disk never needs its
// whole map in memory. Queries must move forward.
class AllocationCursor {
 public:
  AllocationCursor(vix::BlockDevice& device, uint64_t capacity_sectors)
      : device_(device), capacity_(capacity_sectors) {}
  // Whether any sector of [start, end) is allocated.
  vix::Result<bool> any_allocated(uint64_t start, uint64_t end);
  // Next merged extent starting at or after `from`; nullopt at the end of the disk.
  vix::Result<std::optional<vix::SectorExtent>> next(uint64_t from);

 private:
  vix::Result<void> load(uint64_t from);
  vix::BlockDevice& device_;
  uint64_t capacity_;
  uint64_t window_start_ = 0, window_end_ = 0;
  std::vector<vix::SectorExtent> extents_;
  size_t index_ = 0;
};

// True if all n bytes are zero.
bool is_zero(const uint8_t* p, size_t n);

int cmd_info(const std::vector<std::string>& args);
int cmd_cat(const std::vector<std::string>& args);
int cmd_map(const std::vector<std::string>& args);
int cmd_create(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_cleanup(const std::vector<std::string>& args);
int cmd_backup(const std::vector<std::string>& args);
int cmd_consolidate(const std::vector<std::string>& args);
int cmd_cbt(const std::vector<std::string>& args);  // cmd_cbt.cc
int cmd_config(const std::vector<std::string>& args);

}  // namespace vixdisk
