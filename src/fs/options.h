// What the user asked vixfs for: the command line (and, with no --local/--server, the servers of
// the config file), checked and resolved before the daemon forks, so every usage error reaches
// the caller's terminal. Nothing here starts the library or mounts anything.
#pragma once

#include <string>
#include <vector>

namespace vixfs {

// One server to mount: from --server and its flags, or a vixfs.server.ALIAS section.
struct ServerArgs {
  std::string url, user, password_file, thumbprint, name, transports, password;
  std::string config_scope;  // the section's ALIAS ("" for --server without --name)
};

struct Options {
  std::string local, config, transports, log_file, mountpoint;
  ServerArgs cli;                   // --server, --user, ... as given
  std::vector<ServerArgs> servers;  // what gets mounted
  std::vector<std::string> fuse_opts;
  bool foreground = false, debug = false;
  bool dump_config = false;  // --dump-config: print the configuration, mount nothing
  bool read_write = false;   // -o rw
  // -o redo / noredo (-1: neither given). On -o rw, snapshot disks of a server default to redo;
  // a --local mount writes its disks in place unless redo is asked for.
  int redo = -1;
  std::string keep_redo;  // -o keep-redo=DIR: redo logs are made there and kept
  int cache = -1;         // --cache 1, --no-cache 0, else the config's (vixfs's default: on)
  // Snapshots made with mkdir: -o quiesce ("try"), -o quiesce=require ("require"), else "".
  std::string quiesce;
  bool allow_remove_snapshots = false;  // -o allow-remove-snapshots
};

// Fills *o from argv. Returns -1 when the mount (or --dump-config) should go on; else the
// process should exit with the returned code after writing *message (whole lines) to stdout
// when the code is 0 (--help, --version) and to stderr otherwise (2: a usage error). *message
// is left alone on -1.
// Paths come back absolute, the vixfs-only -o options (redo, noredo, keep-redo=, quiesce[=require],
// allow-remove-snapshots) are taken out
// of o->fuse_opts, and for a server mount o->servers holds each server with its password, which
// may be asked on the terminal.
int parse(int argc, char** argv, Options* o, std::string* message);

// Where the log file goes when neither --log-file nor the config's tmpDirectory says:
// /var/lib/vixfs for root, else the user's XDG state folder.
std::string default_state_dir();

// True when the mount's writes go to redo logs rather than into the disks.
bool redo_wanted(const Options& o);

}  // namespace vixfs
