// vixfs: mounts VMDK disks as raw image files. Shaped like libfuse's passthrough_hp: low-level
// API, multi-threaded loop; every startup error is reported (one line, non-zero exit) before
// the daemon detaches, and unmount closes disks, disconnects and exits the library, logging
// each step.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/log.h"
#include "fs/disk_file.h"
#include "fs/fs_ops.h"
#include "fs/kernel_readahead.h"
#include "fs/local_scan.h"
#include "fs/options.h"
#include "fs/server_tree.h"
#include "fs/stats.h"
#include "vix/config_keys.h"
#include "vix/connection.h"
#include "vix/errors.h"
#include "vix/library.h"

namespace {

using vixfs::Options;
using vixfs::ServerArgs;

// Where log lines go: stderr until the daemon has its log file.
FILE* g_log = stderr;

void write_log(const char* level, const char* fmt, va_list args) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char stamp[40];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
  flockfile(g_log);
  fprintf(g_log, "%s.%03ldZ %s vixfs[%d]: ", stamp, ts.tv_nsec / 1000000, level, getpid());
  vfprintf(g_log, fmt, args);
  fflush(g_log);
  funlockfile(g_log);
}
void log_cb(const char* fmt, va_list args) {
  write_log("info", fmt, args);
}
void warn_cb(const char* fmt, va_list args) {
  write_log("warn", fmt, args);
}
void panic_cb(const char* fmt, va_list args) {
  write_log("panic", fmt, args);
}

// Everything the mount needs, torn down in the order unmount wants.
struct Daemon {
  bool library = false;
  std::unique_ptr<vix::Connection> conn;
  std::vector<std::unique_ptr<vixfs::ServerTree>> servers;
  std::unique_ptr<vixfs::FsContext> fs;
  fuse_session* se = nullptr;
  bool mounted = false, signals = false;
  std::string redo_dir;          // where redo logs go ("" without redo)
  bool remove_redo_dir = false;  // a folder of this mount's own, deleted at unmount
  int fuse_threads = 0;          // vixfs.fuse.threads, set by do_mount

  void teardown() {
    if (signals && se) fuse_remove_signal_handlers(se);
    if (mounted) {
      vix::log::info("unmounting");
      fuse_session_unmount(se);
      mounted = false;
    }
    if (fs) {
      for (auto& d : fs->tree.disks()) d->close_now();
      vix::log::info("closed every disk");
    }
    if (conn) {
      conn.reset();
      vix::log::info("disconnected");
    }
    if (fs) fs->refresh = nullptr;
    for (auto& server : servers) server->shutdown();
    servers.clear();
    if (remove_redo_dir) {
      // Logs of disks that left the tree (a snapshot deleted while mounted) go with the rest.
      std::error_code ec;
      std::filesystem::remove_all(redo_dir, ec);
      if (ec) vix::log::error("cannot remove redo folder " + redo_dir + ": " + ec.message());
      remove_redo_dir = false;
    }
    if (se) fuse_session_destroy(se);
    se = nullptr;
    fs.reset();
    if (library) {
      vix::log::info("library exit");
      vix::Library::exit();
      library = false;
    }
  }
};

std::string start_servers(const Options& o, Daemon* d);
std::string start_local(const Options& o, Daemon* d);

// The command line's part of the configuration. Unlike a backup stream (VDDK's reason to leave
// caching off), a mount serves both sequential copies and a loop-mounted file system's repeated
// random reads: the cache is on by default.
void adjust_config(const Options& o, vix::Config& c) {
  const std::string cache(vix::kEnableCache.name);
  if (o.cache >= 0) {
    c.set(cache, o.cache ? "1" : "0");
  } else if (c.find(vix::kEnableCache) == nullptr) {
    c.set(cache, "1", vix::kOriginDefault);
  }
}

// --dump-config: the configuration a mount with these options would run with. Exit status 1
// when the file does not load or a value is refused.
int dump_config(const Options& o) {
  auto report = vix::config_report(o.config, [&o](vix::Config& c) { adjust_config(o, c); });
  if (!report.ok()) {
    fprintf(stderr, "vixfs: %s\n", report.error().message.c_str());
    return 1;
  }
  for (const std::string& w : report->warnings) fprintf(stderr, "vixfs: warning: %s\n", w.c_str());
  for (const std::string& e : report->errors) fprintf(stderr, "vixfs: %s\n", e.c_str());
  for (const std::string& line : report->lines) printf("%s\n", line.c_str());
  return report->errors.empty() ? 0 : 1;
}

// keep-redo=DIR, else a fresh folder under tmpDirectory, made after the fork so it is the
// daemon's and removed at its unmount.
std::string make_redo_dir(const Options& o, Daemon* d) {
  if (!vixfs::redo_wanted(o)) return "";
  if (!o.keep_redo.empty()) {
    d->redo_dir = o.keep_redo;
  } else {
    std::string base = vix::Library::get()->config().get(vix::kTmpDirectory);
    if (base.empty()) {
      const char* t = std::getenv("TMPDIR");
      base = t && *t ? t : "/tmp";
    }
    std::string templ = base + "/vixfs-redo-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
      return "redo logs: cannot make a folder in " + base + ": " + strerror(errno);
    }
    d->redo_dir = templ;
    d->remove_redo_dir = true;
  }
  vix::log::info("writes go to redo logs in " + d->redo_dir +
                 (o.keep_redo.empty() ? " (dropped at unmount)" : " (kept)"));
  return "";
}
std::string do_mount(const Options& o, Daemon* d, const char* argv0);

// Sets up library, tree and mount; "" on success, else the one-line reason.
std::string start(const Options& o, Daemon* d, const char* argv0) {
  if (!o.foreground) {
    // The log file is open before the library starts, so even its first line lands there.
    std::string file = o.log_file;
    if (file.empty()) {
      std::string dir = vixfs::default_state_dir();
      std::vector<std::string> ignored;
      if (!o.config.empty()) {
        if (auto c = vix::Config::load_file(o.config, &ignored); c.ok()) {
          if (std::string tmp = c->get(vix::kTmpDirectory); !tmp.empty()) dir = tmp;
        }
      }
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      file = dir + "/vixfs.log";
    }
    FILE* f = fopen(file.c_str(), "ae");
    if (!f) return "log file " + file + ": " + strerror(errno);
    g_log = f;
  }
  auto adjust = [&o](vix::Config& c) { adjust_config(o, c); };
  if (auto r = vix::Library::init({log_cb, warn_cb, panic_cb}, "", o.config, adjust); !r.ok()) {
    return "init" + (o.config.empty() ? "" : " " + o.config) + ": " + r.error().message;
  }
  d->library = true;
  if (std::string failure = make_redo_dir(o, d); !failure.empty()) return failure;
  if (!o.servers.empty()) {
    if (std::string failure = start_servers(o, d); !failure.empty()) return failure;
  } else {
    if (std::string failure = start_local(o, d); !failure.empty()) return failure;
  }
  return do_mount(o, d, argv0);
}

void add_meta(vixfs::Tree& tree) {
  fuse_ino_t meta = tree.add_dir(tree.root(), ".vixfs");
  tree.add_text(meta, "version",
                std::string("vixfs ") + VIXFS_VERSION + "\nlibfuse " +
                    std::to_string(fuse_version()) + "\ntransports " +
                    vix::supported_transport_modes() + "\n");
  tree.add_generated(meta, "stats.json", [&tree] { return vixfs::render_stats(tree); });
}

// SIGUSR1 writes the stats to the log: the handler only writes a byte to a pipe, and a thread
// that reads it renders and logs (nothing of that is async-signal-safe).
int g_usr1_pipe[2] = {-1, -1};
void on_usr1(int) {
  const int saved = errno;
  char c = 1;
  ssize_t ignored = write(g_usr1_pipe[1], &c, 1);
  (void)ignored;
  errno = saved;
}

class StatsSignal {
 public:
  explicit StatsSignal(const vixfs::Tree& tree) {
    if (pipe2(g_usr1_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
    thread_ = std::thread([&tree] {
      pollfd p{g_usr1_pipe[0], POLLIN, 0};
      char buf[64];
      for (;;) {
        if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
        const ssize_t n = read(g_usr1_pipe[0], buf, sizeof buf);
        if (n == 0) return;  // the write end closed: stopping
        if (n > 0 && memchr(buf, 1, static_cast<size_t>(n))) {
          vix::log::info("stats (SIGUSR1):\n" + vixfs::render_stats(tree));
        }
      }
    });
    struct sigaction sa {};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, nullptr);
  }
  ~StatsSignal() {
    signal(SIGUSR1, SIG_IGN);
    if (g_usr1_pipe[1] >= 0) close(g_usr1_pipe[1]);
    if (thread_.joinable()) thread_.join();
    if (g_usr1_pipe[0] >= 0) close(g_usr1_pipe[0]);
    g_usr1_pipe[0] = g_usr1_pipe[1] = -1;
  }

 private:
  std::thread thread_;
};

std::string start_servers(const Options& o, Daemon* d) {
  d->fs = std::make_unique<vixfs::FsContext>();
  // The kernel keeps entries and attributes one TTL, so that lookups come back (and start a
  // refresh) when the inventory may have changed; listings stay cached until a refresh that
  // changes them invalidates them.
  d->fs->attr_timeout = 3600;
  add_meta(d->fs->tree);
  for (const ServerArgs& s : o.servers) {
    vix::log::info("mounting " + s.url + " on " + o.mountpoint);
    vixfs::ServerOptions so;
    so.url = s.url;
    so.user = s.user;
    so.password = s.password;
    so.thumbprint = s.thumbprint;
    so.alias = s.name;
    so.transports = s.transports;
    so.config_scope = s.config_scope;
    so.read_write = o.read_write;
    so.redo_dir = d->redo_dir;
    so.keep_redo = !o.keep_redo.empty();
    so.quiesce = o.quiesce == "require" ? vixfs::ServerOptions::Quiesce::kRequire
                 : o.quiesce == "try"   ? vixfs::ServerOptions::Quiesce::kTry
                                        : vixfs::ServerOptions::Quiesce::kNo;
    so.allow_remove_snapshots = o.allow_remove_snapshots;
    auto st = vixfs::ServerTree::mount(so, &d->fs->tree);
    if (!st.ok()) {
      std::string what = vix::error_text(st.error().code);
      if (!what.empty() && what.back() == '.') what.pop_back();
      return s.url + ": " + what + ": " + st.error().message;
    }
    if (auto ttl = (*st)->ttl().count(); ttl > 0) {
      d->fs->attr_timeout = std::min(d->fs->attr_timeout, static_cast<double>(ttl));
    }
    d->servers.push_back(std::move(st).value());
  }
  std::vector<vixfs::ServerTree*> servers;
  for (auto& s : d->servers) servers.push_back(s.get());
  d->fs->refresh = [servers] {
    for (vixfs::ServerTree* s : servers) s->maybe_refresh();
  };
  d->fs->make_dir = [servers](fuse_ino_t parent, const std::string& name) {
    for (vixfs::ServerTree* s : servers) {
      if (int rc = s->make_snapshot(parent, name); rc != vixfs::ServerTree::kNotMine) return rc;
    }
    return -1;
  };
  d->fs->remove_dir = [servers](fuse_ino_t parent, const std::string& name) {
    for (vixfs::ServerTree* s : servers) {
      if (int rc = s->remove_snapshot(parent, name); rc != vixfs::ServerTree::kNotMine) return rc;
    }
    return -1;
  };
  return "";
}

std::string start_local(const Options& o, Daemon* d) {
  vix::log::info("mounting " + o.local + " on " + o.mountpoint);
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, !o.read_write, "", o.transports);
  if (!conn.ok()) return "connect: " + conn.error().message;
  d->conn = std::move(conn).value();

  std::vector<std::string> notes;
  auto disks = vixfs::scan_local(o.local, &notes);
  if (!disks.ok()) return disks.error().message;
  for (const auto& n : notes) vix::log::info(n);
  d->fs = std::make_unique<vixfs::FsContext>();
  vixfs::Tree& tree = d->fs->tree;
  add_meta(tree);
  for (const auto& ld : *disks) {
    // Opening once learns the capacity and weeds out files the library cannot open at all.
    auto disk = d->conn->open(ld.path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    if (!disk.ok()) {
      vix::log::error(ld.name + ".img: left out, " + ld.path + " does not open: " +
                      vix::error_text(disk.error().code) + " (" + disk.error().message + ")");
      continue;
    }
    const uint64_t capacity = (*disk)->info().capacity_sectors * vix::kSectorSize;
    disk->reset();
    auto file =
        std::make_shared<vixfs::DiskFile>(d->conn.get(), ld.path, ld.name + ".img", capacity);
    if (o.read_write) file->set_write_policy([] { return std::string(); });
    if (!d->redo_dir.empty()) {
      file->set_redo_log({d->redo_dir + "/" + ld.name + ".redo.vmdk", !o.keep_redo.empty()});
    }
    tree.add_disk(tree.root(), ld.name + ".img", std::move(file), ld.mtime);
    vix::log::info(ld.name + ".img: " + ld.path + ", " + std::to_string(capacity) + " bytes");
  }
  return "";
}

std::string do_mount(const Options& o, Daemon* d, const char* argv0) {
  d->fs->read_write = o.read_write;
  std::vector<std::string> args = {
      argv0, "-o",
      // A server's tree takes mkdir and rmdir (snapshots) on a read-only mount too: the kernel
      // must let them through, and vixfs refuses every other change itself (EROFS).
      std::string(o.read_write || !o.servers.empty() ? "rw" : "ro") +
          ",fsname=vixfs,subtype=vixfs,max_read=" + std::to_string(vixfs::kMaxRead)};
  for (const auto& opt : o.fuse_opts) {
    args.push_back("-o");
    args.push_back(opt);
  }
  if (o.debug) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  d->se = fuse_session_new(&fargs, &vixfs::fs_operations(), sizeof(fuse_lowlevel_ops), d->fs.get());
  fuse_opt_free_args(&fargs);
  if (!d->se) return "bad mount options (see vixfs --help)";
  if (fuse_set_signal_handlers(d->se) != 0) return "cannot install signal handlers";
  d->signals = true;
  if (fuse_session_mount(d->se, o.mountpoint.c_str()) != 0) {
    return "cannot mount on " + o.mountpoint;
  }
  d->mounted = true;
  {
    auto kb = vix::Library::get()->config().get(vix::kFuseReadAheadKB);
    if (!kb.ok()) return kb.error().message;
    vixfs::arm_kernel_readahead(o.mountpoint, static_cast<uint32_t>(*kb));
  }
  {
    // Local files are read on the CPU: workers beyond the cores only add wake-ups and lock
    // contention (fio 4 KiB O_DIRECT on 2 cores: 16 workers 39k IOPS, p99 0.89 ms; 2 workers
    // 51k, 0.25 ms). Network disks block workers on the server, and a listing or stats.json must
    // not wait behind them.
    const int64_t fallback =
        o.local.empty() ? 16 : std::clamp<int64_t>(std::thread::hardware_concurrency(), 2, 256);
    auto n = vix::Library::get()->config().get(vix::kFuseThreads, fallback);
    if (!n.ok()) return n.error().message;
    d->fuse_threads = static_cast<int>(*n);
  }
  vix::log::info("mounted " + o.mountpoint + (o.read_write ? " read-write" : " read-only") +
                 ", up to " + std::to_string(d->fuse_threads) + " FUSE worker threads");
  // From now on the kernel caches what it is shown; what a refresh changes it is told about.
  d->fs->tree.record_changes(true);
  fuse_session* se = d->se;
  for (auto& server : d->servers) {
    server->set_invalidate([se](std::vector<vixfs::Tree::Change> changes) {
      std::set<fuse_ino_t> folders;
      for (const auto& c : changes) {
        // -ENOENT when the kernel never looked the name up: nothing to forget.
        fuse_lowlevel_notify_inval_entry(se, c.parent, c.name.c_str(), c.name.size());
        folders.insert(c.parent);
      }
      for (fuse_ino_t f : folders) fuse_lowlevel_notify_inval_inode(se, f, 0, 0);
    });
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string message;
  if (int rc = vixfs::parse(argc, argv, &o, &message); rc >= 0) {
    fputs(message.c_str(), rc == 0 ? stdout : stderr);
    return rc;
  }
  if (o.dump_config) return dump_config(o);

  // Not in the foreground: fork before anything starts threads; the parent waits for the
  // child's verdict on the mount and exits with it, so errors reach the caller's terminal.
  int report = -1;
  if (!o.foreground) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      fprintf(stderr, "vixfs: pipe: %s\n", strerror(errno));
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "vixfs: fork: %s\n", strerror(errno));
      return 1;
    }
    if (pid > 0) {
      close(fds[1]);
      std::string msg;
      char buf[512];
      ssize_t n;
      while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) msg.append(buf, static_cast<size_t>(n));
      }
      if (msg == "ok") return 0;
      if (msg.empty()) msg = "the daemon died while mounting";
      int status = 0;
      waitpid(pid, &status, 0);
      fprintf(stderr, "vixfs: %s\n", msg.c_str());
      return 1;
    }
    close(fds[0]);
    report = fds[1];
    setsid();
  }

  Daemon d;
  std::string failure = start(o, &d, argv[0]);
  if (!failure.empty()) {
    vix::log::error("mount failed: " + failure);
    d.teardown();
    if (report >= 0) {
      ssize_t ignored = write(report, failure.data(), failure.size());
      (void)ignored;
    } else {
      fprintf(stderr, "vixfs: %s\n", failure.c_str());
    }
    return 1;
  }
  if (report >= 0) {
    if (chdir("/") != 0) vix::log::error("chdir /: " + std::string(strerror(errno)));
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0), dup2(null, 1), dup2(null, 2);
      if (null > 2) close(null);
    }
    ssize_t ignored = write(report, "ok", 2);
    (void)ignored;
    close(report);
  }

  auto stats_signal = std::make_unique<StatsSignal>(d.fs->tree);
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, static_cast<unsigned>(d.fuse_threads));
  int rc = fuse_session_loop_mt(d.se, cfg);
  fuse_loop_cfg_destroy(cfg);
  vix::log::info(rc == 0 ? "session ended" : "session ended with error " + std::to_string(rc));
  stats_signal.reset();
  d.teardown();
  if (g_log != stderr) fclose(g_log);
  return rc == 0 ? 0 : 1;
}
