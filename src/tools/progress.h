// A one-line progress bar on stderr, drawn only when stderr is a terminal (so pipes, logs and
// tests see nothing) and at most ten times a second.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace vixdisk {

class Progress {
 public:
  Progress(std::string label, uint64_t total);
  ~Progress();
  void update(uint64_t done);
  void finish();  // final line and newline; also done by the destructor

 private:
  void draw(uint64_t done);
  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool finished_ = false;
  uint64_t last_done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace vixdisk
