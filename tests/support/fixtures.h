// Test support: temporary folders and running the real tools (qemu-img, qemu-io) that make
// fixtures and serve as the oracle for what a disk's bytes are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vixtest {

// A fresh folder under $TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs cmd with /bin/sh -c; never throws.
CommandResult run(const std::string& cmd);
// Runs cmd and fails the current test (ADD_FAILURE) if it exits non-zero; returns its output.
std::string run_ok(const std::string& cmd);
// Single-quotes s for the shell.
std::string sh_quote(const std::string& s);

std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::vector<uint8_t>& data);
void write_file(const std::string& path, const std::string& data);

// qemu-img convert -O raw of a disk image (format probed, or given): the oracle's bytes.
std::vector<uint8_t> qemu_raw(const std::string& image, const std::string& format = "vmdk");

}  // namespace vixtest
