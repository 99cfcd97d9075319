// Test support: the vixfs daemon, started with -f as a child of the test (support/process.h),
// watched through /proc/self/mountinfo, and unmounted with a deadline so a hung teardown fails a
// test instead of hanging it. Its destructor unmounts (lazily) and reaps it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/process.h"

namespace vixtest {

// The built daemon (VIXFS_BINARY).
const char* vixfs_binary();
// A vixfs FUSE mount is at `mountpoint`.
bool vixfs_mounted(const std::string& mountpoint);
std::string read_text(const std::string& path);

class VixfsDaemon {
 public:
  // Starts `vixfs -f ARGS MOUNTPOINT` with its output in `log`; waits up to 15 s for the mount.
  VixfsDaemon(std::vector<std::string> args, std::string mountpoint, std::string log);
  ~VixfsDaemon();
  VixfsDaemon(const VixfsDaemon&) = delete;
  VixfsDaemon& operator=(const VixfsDaemon&) = delete;

  bool mounted();
  std::string log() const { return read_text(log_); }
  pid_t pid() const { return child_.pid(); }

  // Sends sig to the daemon (SIGTERM, SIGUSR1...); no wait.
  bool signal(int sig) { return child_.signal(sig); }
  // Waits up to `limit` for the daemon to exit by itself; true if it has.
  bool wait_exit(std::chrono::milliseconds limit) { return child_.wait_exit(limit); }
  // The daemon's wait status once it has exited.
  int status() const { return child_.status(); }

  // The daemon dies at once (its mount stays until stop() clears it); for crash tests.
  void kill9() { child_.kill_now(); }

  // Lazily unmounts (also a dead daemon's mount) and waits up to `limit` for the daemon's
  // exit; false if it had to be killed or exited non-zero.
  bool stop(std::chrono::milliseconds limit = std::chrono::seconds(10));

 private:
  std::string mountpoint_, log_;
  Child child_;
};

}  // namespace vixtest
