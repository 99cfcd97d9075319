#include "fs/kernel_readahead.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

#include "common/log.h"

namespace vixfs {

namespace {

std::mutex g_mu;
std::string g_bdi_file;  // /sys/class/bdi/MAJ:MIN/read_ahead_kb, "" when not armed
uint32_t g_kb = 0;
bool g_applied = false;

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string oct = s.substr(i + 1, 3);
      if (oct.size() == 3 && oct.find_first_not_of("01234567") == std::string::npos) {
        out += static_cast<char>(std::stoi(oct, nullptr, 8));
        i += 3;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

void log(bool warn, const std::string& msg) {
  warn ? vix::log::warn(msg) : vix::log::info(msg);
}

}  // namespace

void arm_kernel_readahead(const std::string& mountpoint, uint32_t kb) {
  if (kb == 0) return;
  char resolved[PATH_MAX];
  const std::string want = realpath(mountpoint.c_str(), resolved) ? resolved : mountpoint;
  std::ifstream in("/proc/self/mountinfo");
  std::string line, device;
  // The last matching line wins: ours is the newest mount on that path.
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, majmin, root, point;
    if (!(fields >> id >> parent >> majmin >> root >> point)) continue;
    if (unescape_mountinfo(point) == want) device = majmin;
  }
  std::lock_guard lock(g_mu);
  if (device.empty()) {
    log(true, "kernel read-ahead: " + want + " not found in /proc/self/mountinfo; left as is");
    return;
  }
  g_bdi_file = "/sys/class/bdi/" + device + "/read_ahead_kb";
  g_kb = kb;
  g_applied = false;
}

void apply_kernel_readahead() {
  std::lock_guard lock(g_mu);
  if (g_applied || g_bdi_file.empty()) return;
  g_applied = true;
  const int fd = open(g_bdi_file.c_str(), O_WRONLY | O_CLOEXEC);
  const std::string value = std::to_string(g_kb) + "\n";
  if (fd < 0 || write(fd, value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    log(false, "kernel read-ahead: cannot write " + g_bdi_file + ": " + strerror(errno) +
                   " (needs root); sequential reads come in 128 KiB requests");
  } else {
    log(false, "kernel read-ahead for the mount: " + std::to_string(g_kb) + " KiB");
  }
  if (fd >= 0) close(fd);
}

}  // namespace vixfs
