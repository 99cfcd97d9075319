// The one logging facade of every layer. Code anywhere calls log::info(...) and friends; where
// the lines go is decided once, by the sink the disk library installs at InitEx (spdlog, or the
// VDDK caller's log/warn/panic callbacks, at vixDiskLib.transport.LogLevel). Before InitEx and
// after Exit nothing is installed and messages are dropped: the library must stay silent when it
// is merely loaded.
#pragma once

#include <string_view>

namespace vix::log {

// vixDiskLib.transport.LogLevel's scale.
enum class Level { kPanic = 0, kError = 1, kWarning = 2, kAudit = 3, kInfo = 4, kVerbose = 5 };

class Sink {
 public:
  virtual ~Sink() = default;
  // Called only for messages at or below the sink's level; must be thread-safe.
  virtual void write(Level level, std::string_view msg) = 0;
  virtual int level() const = 0;
};

// Installs the process's sink (nullptr removes it). Waits for log calls in progress, so after
// install(nullptr) returns the old sink may be destroyed.
void install(Sink* sink);

void info(std::string_view msg);   // audit level (3): what VDDK logs by default
void warn(std::string_view msg);   // level 2
void error(std::string_view msg);  // level 1
void debug(std::string_view msg);  // verbose (5)
void panic(std::string_view msg);  // always; vixfs itself never aborts on it

}  // namespace vix::log
