// vix::Library: the process-wide state InitEx creates and Exit destroys: the parsed config, the
// loggers (spdlog, or the caller's log/warn/panic callbacks) and the async I/O workers.
// The C ABI, the vixdisk tool and the FUSE daemon all go through it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/result.h"

namespace vix {

struct LogCallbacks {
  VixDiskLibGenericLogFunc* log = nullptr;  // NULL: vixfs's default logger (spdlog, stderr)
  VixDiskLibGenericLogFunc* warn = nullptr;
  VixDiskLibGenericLogFunc* panic = nullptr;
};

class Library {
 public:
  // Reads config_file (may be empty), sets up logging. Fails if already initialised.
  // `adjust` (optional) sees the configuration before anything reads it: a program's own
  // defaults and command-line overrides (vixfs turns the read-ahead cache on by default).
  static Result<void> init(const LogCallbacks& callbacks, const std::string& lib_dir,
                           const std::string& config_file,
                           const std::function<void(Config&)>& adjust = nullptr);
  static void exit();
  // The initialised library, or nullptr before init / after exit.
  static Library* get();

  const Config& config() const { return config_; }

  // Logging goes through common/log.h, to the sink init installs: the callbacks (error lines to
  // the warn callback, as VDDK does), else spdlog, at the configured level.

  // vixDiskLib.transport.LogLevel: 0 panic, 1 error, 2 warning, 3 audit, 4 info, 5 verbose,
  // 6 trivia.
  int log_level() const;

  // Runs job on one of the async workers (started by init, joined by exit after the queue is
  // drained, so every accepted job runs exactly once). False once exit has begun.
  bool submit(std::function<void()> job);
  size_t worker_count() const;

 private:
  Config config_;
  // The log sink (spdlog logger or callbacks) and the worker pool live in library.cc.
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend struct LibraryAccess;

 public:
  Library();
  ~Library();
};

// The transport modes this build supports, in default order, colon-separated (the transport
// table of src/transports/chain.cc).
const char* supported_transport_modes();

}  // namespace vix
