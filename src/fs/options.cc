#include "fs/options.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "fs/server_tree.h"

namespace vixfs {
namespace {

const char kUsage[] =
    "usage: vixfs --local PATH [options] MOUNTPOINT\n"
    "       vixfs --server https://HOST[:PORT] --user USER [options] MOUNTPOINT\n"
    "       vixfs [--config FILE] [--cache | --no-cache] --dump-config\n"
    "Mounts VMDK disks as raw image files, read-only unless -o rw.\n"
    "\n"
    "  --local PATH        a .vmdk file or a folder of them (each disk as NAME.img)\n"
    "  --server URL        a vCenter/ESXi: MOUNTPOINT/SERVER/VM/SNAPSHOT/scsi0-0.img ...\n"
    "  --user USER         the vSphere user\n"
    "  --password-file F   the password is the file's first line (else $VIXFS_PASSWORD,\n"
    "                      else asked on the terminal)\n"
    "  --thumbprint HEX    trust the server by its certificate's SHA-1 or SHA-256\n"
    "  --name ALIAS        the server's folder name (default: the URL's host); also\n"
    "                      applies the config's vixfs.server.ALIAS.nbd.* / .datastore.* keys\n"
    "  (no --local/--server: every vixfs.server.ALIAS.url of the config is mounted)\n"
    "  --config FILE       VDDK-syntax config file (default /etc/vixfs/vixfs.conf if present)\n"
    "  --transports MODES  colon-separated transport list (default: the library's)\n"
    "  --cache, --no-cache the read-ahead cache (vixDiskLib.disklib.EnableCache; vixfs\n"
    "                      turns it on unless the config says otherwise)\n"
    "  --log-file FILE     log here when not in the foreground\n"
    "                      (default <tmpDirectory>/vixfs.log)\n"
    "  -o OPT[,OPT...]     mount options: ro (default), allow_other, default_permissions, ...\n"
    "  -o rw               --local disks, and current/ disks of powered-off VMs, take writes\n"
    "                      (fsync makes them durable)\n"
    "  -o redo, noredo     snapshot disks (with --local: every disk) write into local redo\n"
    "                      logs dropped at unmount (default on rw for servers)\n"
    "  -o keep-redo=DIR    make the redo logs in DIR and keep them\n"
    "  -o quiesce[=require] snapshots made with mkdir SERVER/VM/@NAME quiesce the guest\n"
    "                      (crash-consistent with a warning if that fails; =require: fail)\n"
    "  -o allow-remove-snapshots  rmdir removes any snapshot, not only those vixfs made\n"
    "  -f                  stay in the foreground, log to stderr\n"
    "  -d                  foreground with FUSE debug output\n"
    "  --dump-config       print every configuration key with its value and where it\n"
    "                      was set (default, FILE:LINE, command line), then exit\n"
    "  -h, --help          this text\n"
    "  --version           print the version\n";

// Asks on the controlling terminal, echo off; false when there is none (a service, a pipe),
// so the caller can say how else to give the password.
bool prompt_password(const std::string& who, std::string* out) {
  const int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (tty < 0) return false;
  termios saved{};
  if (tcgetattr(tty, &saved) != 0) {
    close(tty);
    return false;
  }
  const std::string prompt = "Password for " + who + ": ";
  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ICANON;
  // Ctrl-C arrives as a character, so echo is restored before the process stops on it.
  quiet.c_lflag &= ~static_cast<tcflag_t>(ISIG);
  tcsetattr(tty, TCSAFLUSH, &quiet);
  // After echo is off, so nothing typed in answer to the prompt is flushed or shown.
  ssize_t ignored = write(tty, prompt.data(), prompt.size());
  std::string line;
  bool got_newline = false, interrupted = false;
  char c;
  ssize_t n;
  while (line.size() < 4096 && ((n = read(tty, &c, 1)) > 0 || (n < 0 && errno == EINTR))) {
    if (n <= 0) continue;
    if (c == '\n') {
      got_newline = true;
      break;
    }
    if (c == quiet.c_cc[VINTR]) {
      interrupted = true;
      break;
    }
    line.push_back(c);
  }
  tcsetattr(tty, TCSAFLUSH, &saved);
  ignored = write(tty, "\n", 1);
  (void)ignored;
  close(tty);
  if (interrupted) raise(SIGINT);  // as if ISIG had been on, now that the terminal is restored
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (!got_newline && line.empty()) return false;  // end of input: nobody answered
  *out = std::move(line);
  return true;
}

// The password of one server: its file, else $VIXFS_PASSWORD, else the terminal. Read before
// the daemon changes directory. "" on success, else why not.
std::string read_password(ServerArgs* s) {
  if (!s->password_file.empty()) {
    FILE* f = fopen(s->password_file.c_str(), "re");
    if (!f) return "password file " + s->password_file + ": " + strerror(errno);
    char buf[4096];
    if (fgets(buf, sizeof buf, f)) s->password = buf;
    fclose(f);
    while (!s->password.empty() && (s->password.back() == '\n' || s->password.back() == '\r')) {
      s->password.pop_back();
    }
  } else if (const char* env = getenv("VIXFS_PASSWORD")) {
    s->password = env;
  } else if (!prompt_password(s->user + "@" + s->url, &s->password)) {
    return "no password for " + s->url +
           ": use --password-file (vixfs.server.ALIAS.passwordFile)"
           " or VIXFS_PASSWORD";
  }
  return "";
}

// The servers to mount: --server, else every vixfs.server.ALIAS section of the config.
std::string collect_servers(Options* o) {
  vix::Config config;
  if (!o->config.empty()) {
    std::vector<std::string> ignored;
    auto c = vix::Config::load_file(o->config, &ignored);
    if (!c.ok()) return c.error().message;
    config = std::move(c).value();
  }
  if (!o->cli.url.empty()) {
    ServerArgs s = o->cli;
    s.transports = o->transports;
    s.config_scope = s.name;
    o->servers.push_back(std::move(s));
  } else {
    for (const std::string& alias : config.server_aliases()) {
      auto value = [&](const vix::PatternKey& key) { return config.get(key, alias).value_or(""); };
      ServerArgs s;
      s.name = s.config_scope = alias;
      s.url = value(vix::kServerUrl);
      s.user = value(vix::kServerUser);
      s.password_file = value(vix::kServerPasswordFile);
      s.thumbprint = value(vix::kServerThumbprint);
      s.transports = o->transports.empty() ? value(vix::kServerTransports) : o->transports;
      if (s.user.empty())
        return o->config + ": " + vix::kServerUser.instance(alias) + " is missing";
      if (!s.password_file.empty()) {
        std::error_code ec;
        s.password_file = std::filesystem::absolute(
            std::filesystem::path(o->config).parent_path() / s.password_file, ec);
      }
      o->servers.push_back(std::move(s));
    }
    if (o->servers.empty()) {
      return "need --local PATH or --server URL (or vixfs.server.ALIAS.url in the config), and a "
             "MOUNTPOINT (see vixfs --help)";
    }
  }
  // The folder is the alias, else the host; two servers on one host get host_port.
  std::map<std::string, int> hosts;
  for (ServerArgs& s : o->servers) {
    if (s.user.empty()) return "--server needs --user USER";
    auto addr = vixfs::parse_server_url(s.url);
    if (!addr.ok()) return addr.error().message;
    if (s.name.empty()) ++hosts[addr->host];
  }
  for (ServerArgs& s : o->servers) {
    auto addr = vixfs::parse_server_url(s.url);
    if (s.name.empty() && hosts[addr->host] > 1) {
      s.name = addr->host + "_" + std::to_string(addr->port);
    }
    if (std::string failure = read_password(&s); !failure.empty()) return failure;
  }
  return "";
}

}  // namespace

int parse(int argc, char** argv, Options* o, std::string* message) {
  // Every usage error is one line, said the same way.
  auto usage_error = [message](const std::string& what) {
    *message = "vixfs: " + what + "\n";
    return 2;
  };
  auto need = [&](int& i, const char* name) -> const char* {
    if (i + 1 >= argc) {
      usage_error(std::string(name) + " needs a value");
      return nullptr;
    }
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = nullptr;
    if (a == "-h" || a == "--help") {
      *message = kUsage;
      return 0;
    } else if (a == "--version") {
      *message = std::string("vixfs ") + VIXFS_VERSION + " (libfuse " +
                 std::to_string(fuse_version()) + ")\n";
      return 0;
    } else if (a == "-f") {
      o->foreground = true;
    } else if (a == "-d") {
      o->foreground = o->debug = true;
    } else if (a == "--dump-config") {
      o->dump_config = true;
    } else if (a == "--cache" || a == "--no-cache") {
      o->cache = a == "--cache" ? 1 : 0;
    } else if (a == "--local" || a == "--config" || a == "--transports" || a == "--log-file" ||
               a == "-o") {
      if (!(v = need(i, a.c_str()))) return 2;
      if (a == "--local") o->local = v;
      if (a == "--config") o->config = v;
      if (a == "--transports") o->transports = v;
      if (a == "--log-file") o->log_file = v;
      if (a == "-o") o->fuse_opts.push_back(v);
    } else if (a.rfind("-o", 0) == 0) {
      o->fuse_opts.push_back(a.substr(2));
    } else if (a == "--server" || a == "--user" || a == "--password-file" || a == "--thumbprint" ||
               a == "--name") {
      if (!(v = need(i, a.c_str()))) return 2;
      if (a == "--server") o->cli.url = v;
      if (a == "--user") o->cli.user = v;
      if (a == "--password-file") o->cli.password_file = v;
      if (a == "--thumbprint") o->cli.thumbprint = v;
      if (a == "--name") o->cli.name = v;
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option " + a + " (see vixfs --help)");
    } else if (o->mountpoint.empty()) {
      o->mountpoint = a;
    } else {
      return usage_error("unexpected argument " + a);
    }
  }
  if ((!o->local.empty() && !o->cli.url.empty()) || (o->mountpoint.empty() && !o->dump_config)) {
    return usage_error("need --local PATH or --server URL, and a MOUNTPOINT (see vixfs --help)");
  }
  for (const std::string& opts : o->fuse_opts) {
    size_t start = 0;
    while (start <= opts.size()) {
      size_t comma = opts.find(',', start);
      std::string one = opts.substr(start, comma == std::string::npos ? comma : comma - start);
      if (one == "rw" || one == "ro") o->read_write = one == "rw";  // the last one wins
      if (one == "redo" || one == "noredo") o->redo = one == "redo";
      if (one.rfind("keep-redo", 0) == 0) {
        if (one.size() <= 10 || one[9] != '=') {
          return usage_error("-o keep-redo=DIR needs a folder");
        }
        o->keep_redo = one.substr(10);
      }
      if (one == "quiesce") o->quiesce = "try";
      if (one.rfind("quiesce=", 0) == 0) {
        if (one != "quiesce=require" && one != "quiesce=try") {
          return usage_error("-o " + one + ": quiesce takes no value, or =require");
        }
        o->quiesce = one.substr(8);
      }
      if (one == "allow-remove-snapshots") o->allow_remove_snapshots = true;
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  // FUSE does not know the redo and snapshot options: they are vixfs's alone.
  for (std::string& opts : o->fuse_opts) {
    std::string kept;
    size_t start = 0;
    while (start <= opts.size()) {
      size_t comma = opts.find(',', start);
      std::string one = opts.substr(start, comma == std::string::npos ? comma : comma - start);
      if (one != "redo" && one != "noredo" && one.rfind("keep-redo", 0) != 0 && one != "quiesce" &&
          one.rfind("quiesce=", 0) != 0 && one != "allow-remove-snapshots") {
        kept += (kept.empty() ? "" : ",") + one;
      }
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    opts = kept;
  }
  std::erase_if(o->fuse_opts, [](const std::string& s) { return s.empty(); });
  if (!o->keep_redo.empty()) {
    if (o->redo == 0) {
      return usage_error("-o keep-redo and -o noredo contradict each other");
    }
    o->redo = 1;
    struct stat st {};
    if (stat(o->keep_redo.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(o->keep_redo.c_str(), W_OK | X_OK) != 0) {
      return usage_error("-o keep-redo=" + o->keep_redo + ": not a folder this user can write");
    }
  }
  if ((!o->quiesce.empty() || o->allow_remove_snapshots) && !o->local.empty()) {
    return usage_error("-o quiesce and allow-remove-snapshots are for --server mounts");
  }
  if (o->redo == 1 && !o->read_write) {
    return usage_error("-o redo and keep-redo= need -o rw (a read-only mount writes nothing)");
  }
  // The daemon changes to /, so every path is made absolute now.
  std::error_code ec;
  for (std::string* p : {&o->local, &o->config, &o->log_file, &o->mountpoint, &o->keep_redo}) {
    if (!p->empty()) *p = std::filesystem::absolute(*p, ec).lexically_normal().string();
  }
  if (o->config.empty() && access("/etc/vixfs/vixfs.conf", R_OK) == 0) {
    o->config = "/etc/vixfs/vixfs.conf";
  }
  // A dump mounts nothing: it needs no servers, and asks for no password.
  if (o->local.empty() && !o->dump_config) {
    if (std::string failure = collect_servers(o); !failure.empty()) {
      return usage_error(failure);
    }
  }
  return -1;
}

std::string default_state_dir() {
  if (geteuid() == 0) return "/var/lib/vixfs";
  if (const char* x = getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/vixfs";
  if (const char* h = getenv("HOME"); h && *h) return std::string(h) + "/.local/state/vixfs";
  return "/tmp";
}

bool redo_wanted(const Options& o) {
  if (!o.read_write) return false;
  return o.local.empty() ? o.redo != 0 : o.redo == 1;
}

}  // namespace vixfs
