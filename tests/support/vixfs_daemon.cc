#include "support/vixfs_daemon.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "support/fixtures.h"

namespace vixtest {

namespace {

// `vixfs -f ARGS MOUNTPOINT`, the mount point made first.
ChildOptions daemon_options(std::vector<std::string> args, const std::string& mountpoint,
                            const std::string& log) {
  mkdir(mountpoint.c_str(), 0755);
  args.insert(args.begin(), {"vixfs", "-f"});
  args.push_back(mountpoint);
  ChildOptions o;
  o.argv = std::move(args);
  o.program = vixfs_binary();
  o.log = log;
  o.truncate_log = true;
  return o;
}

}  // namespace

const char* vixfs_binary() {
  return VIXFS_BINARY;
}

bool vixfs_mounted(const std::string& mountpoint) {
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream in(line);
    std::string skip, point;
    in >> skip >> skip >> skip >> skip >> point;
    if (point == mountpoint && line.find(" fuse.vixfs ") != std::string::npos) return true;
  }
  return false;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

VixfsDaemon::VixfsDaemon(std::vector<std::string> args, std::string mountpoint, std::string log)
    : mountpoint_(std::move(mountpoint)),
      log_(std::move(log)),
      child_(daemon_options(std::move(args), mountpoint_, log_)) {
  child_.wait_until([this] { return vixfs_mounted(mountpoint_); });
}

VixfsDaemon::~VixfsDaemon() {
  stop(std::chrono::seconds(10));
}

bool VixfsDaemon::mounted() {
  return child_.running() && vixfs_mounted(mountpoint_);
}

bool VixfsDaemon::stop(std::chrono::milliseconds limit) {
  if (vixfs_mounted(mountpoint_)) run("fusermount3 -u -z " + sh_quote(mountpoint_));
  if (!child_.wait_exit(limit)) {
    child_.kill_now();
    return false;
  }
  const int status = child_.status();
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace vixtest
