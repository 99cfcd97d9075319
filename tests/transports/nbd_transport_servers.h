// The library's log, captured for the nbd transport tests' assertions. Their servers (qemu-nbd,
// nbdkit on a free port of 127.0.0.1) are vixtest::PortServer (support/process.h).
#pragma once

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>

#include "support/fixtures.h"
#include "support/process.h"
#include "vix/library.h"

namespace nbdtest {

// The library's log lines, for assertions: capture_log is given as its log and warn callbacks.
inline std::mutex& captured_mutex() {
  static std::mutex mu;
  return mu;
}
inline std::string& captured_text() {
  static std::string text;
  return text;
}
inline void capture_log(const char* fmt, va_list args) {
  char buf[2048];
  vsnprintf(buf, sizeof buf, fmt, args);
  std::lock_guard lock(captured_mutex());
  std::string& log = captured_text();
  log += buf;
  if (log.empty() || log.back() != '\n') log += '\n';
}
inline std::string captured() {
  std::lock_guard lock(captured_mutex());
  return captured_text();
}
inline void clear_captured() {
  std::lock_guard lock(captured_mutex());
  captured_text().clear();
}

// Writes `config` to `config_file` and initialises the library with it, its log and warnings
// going to capture_log (cleared first).
inline vix::Result<void> init_library_capturing_log(const std::string& config_file,
                                                    const std::string& config) {
  clear_captured();
  vixtest::write_file(config_file, config);
  vix::LogCallbacks cb;
  cb.log = capture_log;
  cb.warn = capture_log;
  return vix::Library::init(cb, "", config_file);
}

}  // namespace nbdtest
