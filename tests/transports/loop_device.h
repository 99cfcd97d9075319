// A loop device over a file for the tests of the block-device transports (san, hotadd): made
// with `losetup -f --show`, detached by the destructor whatever the test's outcome, so a failed
// assertion never leaks a device.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "support/fixtures.h"

namespace vixtest {

class LoopDevice {
 public:
  LoopDevice() = default;
  // Attaches `file`; on failure path() is empty and error() says why.
  static LoopDevice attach(const std::string& file, bool read_only = false,
                           unsigned sector_size = 0) {
    LoopDevice d;
    std::string cmd = "losetup -f --show";
    if (read_only) cmd += " -r";
    if (sector_size != 0) cmd += " --sector-size " + std::to_string(sector_size);
    CommandResult r = run(cmd + " " + sh_quote(file));
    std::string out = r.output;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    if (r.exit_code != 0 || out.rfind("/dev/loop", 0) != 0) {
      d.error_ = "losetup failed (" + std::to_string(r.exit_code) + "): " + out;
      return d;
    }
    d.path_ = out;
    return d;
  }
  ~LoopDevice() { detach(); }
  LoopDevice(LoopDevice&& o) noexcept
      : path_(std::exchange(o.path_, {})), error_(std::move(o.error_)) {}
  LoopDevice& operator=(LoopDevice&& o) noexcept {
    if (this != &o) {
      detach();
      path_ = std::exchange(o.path_, {});
      error_ = std::move(o.error_);
    }
    return *this;
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& path() const { return path_; }
  const std::string& error() const { return error_; }
  explicit operator bool() const { return !path_.empty(); }

  void detach() {
    if (path_.empty()) return;
    CommandResult r = run("losetup -d " + sh_quote(path_));
    if (r.exit_code != 0) ADD_FAILURE() << "losetup -d " << path_ << ": " << r.output;
    path_.clear();
  }

 private:
  std::string path_;
  std::string error_;
};

}  // namespace vixtest

// Skips the test when this machine cannot make loop devices (not root, no loop module): the
// tests need the kernel's block layer, not a stand-in.
#define VIXTEST_LOOP_OR_SKIP(var, ...)                                \
  vixtest::LoopDevice var = vixtest::LoopDevice::attach(__VA_ARGS__); \
  if (!var) GTEST_SKIP() << "no loop device: " << var.error()
