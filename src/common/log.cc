#include "common/log.h"

#include <mutex>
#include <shared_mutex>

namespace vix::log {

namespace {

// Function-local statics only: nothing here may run before InitEx (nbdkit loads the library
// twice, once before and once after re-exec).
std::shared_mutex& sink_mutex() {
  static std::shared_mutex mu;
  return mu;
}
Sink*& current_sink() {
  static Sink* sink = nullptr;
  return sink;
}

// A caller's log callback may call back into the library, which may log again on this thread:
// the nested call must not take the shared lock a second time (install could be waiting).
thread_local int emit_depth = 0;

void emit(Level level, std::string_view msg) {
  std::shared_lock<std::shared_mutex> lock;
  if (emit_depth == 0) lock = std::shared_lock(sink_mutex());
  ++emit_depth;
  struct Leave {
    ~Leave() { --emit_depth; }
  } leave;
  Sink* sink = current_sink();
  if (sink != nullptr && (level == Level::kPanic || static_cast<int>(level) <= sink->level())) {
    sink->write(level, msg);
  }
}

}  // namespace

void install(Sink* sink) {
  std::unique_lock lock(sink_mutex());
  current_sink() = sink;
}

void info(std::string_view msg) {
  emit(Level::kAudit, msg);
}
void warn(std::string_view msg) {
  emit(Level::kWarning, msg);
}
void error(std::string_view msg) {
  emit(Level::kError, msg);
}
void debug(std::string_view msg) {
  emit(Level::kVerbose, msg);
}
void panic(std::string_view msg) {
  emit(Level::kPanic, msg);
}

}  // namespace vix::log
