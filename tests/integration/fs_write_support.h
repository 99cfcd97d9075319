// Shared by the vixfs -o rw suites (fs_write_test.cc, fs_write_server_test.cc): whole-file
// reads and writes, and the comparisons against the model buffer.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"

namespace vixtest {

// The rw suites' daemon is the shared one (support/vixfs_daemon.h), which can also be killed.
using RwMount = VixfsDaemon;

inline std::vector<uint8_t> pread_all(int fd, size_t size) {
  std::vector<uint8_t> out(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pread(fd, out.data() + done, size - done, static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

inline bool pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t off) {
  while (n > 0) {
    const ssize_t w = pwrite(fd, p, n, static_cast<off_t>(off));
    if (w <= 0) return false;
    p += w, n -= static_cast<size_t>(w), off += static_cast<uint64_t>(w);
  }
  return true;
}

// First differing offset, or -1.
inline long first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return static_cast<long>(std::min(a.size(), b.size()));
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return static_cast<long>(i);
  }
  return -1;
}

inline void expect_check_clean(const std::string& vmdk) {
  auto r = run("qemu-img check -q -f vmdk " + sh_quote(vmdk));
  EXPECT_EQ(r.exit_code, 0) << "qemu-img check " << vmdk << ":\n" << r.output;
}

}  // namespace vixtest
