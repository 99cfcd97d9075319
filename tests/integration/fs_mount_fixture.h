// Shared by the vixfs --server suites: a daemon started with -f in a child process, watched
// through /proc/self/mountinfo, and unmounted with a deadline so a hung teardown fails a test
// instead of hanging it.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"

namespace vixtest {

inline bool vixfs_mounted(const std::string& mountpoint) {
  std::ifstream mounts("/proc/self/mountinfo");
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream in(line);
    std::string skip, point;
    in >> skip >> skip >> skip >> skip >> point;
    if (point == mountpoint && line.find(" fuse.vixfs ") != std::string::npos) return true;
  }
  return false;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream all;
  all << in.rdbuf();
  return all.str();
}

class VixfsDaemon {
 public:
  // Starts `vixfs -f ARGS MOUNTPOINT` with its output in `log`; waits up to 15 s for the mount.
  VixfsDaemon(std::vector<std::string> args, std::string mountpoint, std::string log)
      : mountpoint_(std::move(mountpoint)), log_(std::move(log)) {
    mkdir(mountpoint_.c_str(), 0755);
    args.insert(args.begin(), {"vixfs", "-f"});
    args.push_back(mountpoint_);
    pid_ = fork();
    if (pid_ == 0) {
      const int out = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out >= 0) dup2(out, 1), dup2(out, 2);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(VIXFS_BINARY, argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!vixfs_mounted(mountpoint_) && !exited() &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~VixfsDaemon() { stop(std::chrono::seconds(10)); }
  VixfsDaemon(const VixfsDaemon&) = delete;
  VixfsDaemon& operator=(const VixfsDaemon&) = delete;

  bool mounted() { return !exited() && vixfs_mounted(mountpoint_); }
  std::string log() const { return read_text(log_); }

  // The daemon dies at once (its mount stays until stop() clears it); for crash tests.
  void kill9() {
    if (!exited()) kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    done_ = true;
  }

  // Lazily unmounts (also a dead daemon's mount) and waits up to `limit` for the daemon's
  // exit; false if it had to be killed or exited non-zero.
  bool stop(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    if (vixfs_mounted(mountpoint_)) run("fusermount3 -u -z " + sh_quote(mountpoint_));
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!exited() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
      done_ = true;
      return false;
    }
    return WIFEXITED(status_) && WEXITSTATUS(status_) == 0;
  }

 private:
  bool exited() {
    if (!done_ && pid_ > 0 && waitpid(pid_, &status_, WNOHANG) == pid_) done_ = true;
    return done_ || pid_ <= 0;
  }
  std::string mountpoint_, log_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool done_ = false;
};

}  // namespace vixtest
