#include "vix/library.h"

#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <mutex>
#include <vector>

#include "common/log.h"
#include "common/worker_pool.h"
#include "transports/transport.h"
#include "vix/config_keys.h"

namespace vix {

namespace {

// Function-local statics only: the library must do nothing when it is loaded (nbdkit loads it
// twice, once before and once after re-exec), so nothing here runs before InitEx.
std::mutex& init_mutex() {
  static std::mutex m;
  return m;
}

std::atomic<Library*>& instance() {
  static std::atomic<Library*> lib{nullptr};
  return lib;
}

// The callbacks take a va_list, so the message goes through a "%s" format.
void call_log_func(VixDiskLibGenericLogFunc* fn, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fn(fmt, ap);
  va_end(ap);
}

constexpr int kDefaultLogLevel = static_cast<int>(kLogLevel.int_default);
constexpr IntKey kAsyncWorkers{"vixfs.asyncWorkers", 1, 64, 4,
                               "threads that carry out ReadAsync and WriteAsync"};

}  // namespace

KeyList library_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kAsyncWorkers};
  return kKeys;
}

// Where log::info and friends go while the library is initialised: the caller's callbacks, else
// spdlog.
struct Library::Impl final : log::Sink {
  std::shared_ptr<spdlog::logger> logger;
  int level_ = kDefaultLogLevel;
  LogCallbacks callbacks;
  // Serialises the caller's callbacks, which need not be thread-safe; recursive because a
  // callback may call back into the library, which may log.
  std::recursive_mutex callback_mu;
  std::unique_ptr<WorkerPool> workers;

  int level() const override { return level_; }
  void write(log::Level level, std::string_view msg) override {
    VixDiskLibGenericLogFunc* fn = level == log::Level::kPanic     ? callbacks.panic
                                   : level <= log::Level::kWarning ? callbacks.warn
                                                                   : callbacks.log;
    if (fn != nullptr) {
      std::lock_guard lock(callback_mu);
      call_log_func(fn, "%.*s\n", static_cast<int>(msg.size()), msg.data());
      return;
    }
    switch (level) {
      case log::Level::kPanic:
        logger->critical("{}", msg);
        break;
      case log::Level::kError:
        logger->error("{}", msg);
        break;
      case log::Level::kWarning:
        logger->warn("{}", msg);
        break;
      case log::Level::kAudit:
      case log::Level::kInfo:
        logger->info("{}", msg);
        break;
      case log::Level::kVerbose:
        logger->debug("{}", msg);
        break;
    }
  }
};

Library::Library() : impl_(std::make_unique<Impl>()) {}

Library::~Library() = default;

Result<void> Library::init(const LogCallbacks& callbacks, const std::string& lib_dir,
                           const std::string& config_file,
                           const std::function<void(Config&)>& adjust) {
  std::lock_guard guard(init_mutex());
  if (instance().load() != nullptr) {
    return fail(VIX_E_ALREADY_EXISTS,
                "VixDiskLib_InitEx: the library is already initialized; call VixDiskLib_Exit "
                "first");
  }
  std::vector<std::string> warnings;
  Config config;
  if (!config_file.empty()) {
    VIX_ASSIGN_OR_RETURN(config, Config::load_file(config_file, &warnings));
  }
  if (adjust) {
    adjust(config);
  }
  for (std::string& w : config_registry().unknown_keys(config)) warnings.push_back(std::move(w));
  VIX_ASSIGN_OR_RETURN(int64_t level, config.get(kLogLevel));
  VIX_ASSIGN_OR_RETURN(int64_t workers, config.get(kAsyncWorkers));

  auto lib = std::make_unique<Library>();
  lib->config_ = std::move(config);
  lib->impl_->callbacks = callbacks;
  lib->impl_->level_ = static_cast<int>(std::clamp<int64_t>(level, 0, 6));

  std::string file_warning;
  try {
    std::vector<spdlog::sink_ptr> sinks;
    std::string log_file = lib->config_.get(kLogFileName);
    if (!log_file.empty()) {
      try {
        sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file));
      } catch (const spdlog::spdlog_ex& e) {
        file_warning =
            "log.fileName " + log_file + " cannot be opened (" + e.what() + "); logging to stderr";
      }
    }
    if (sinks.empty()) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    lib->impl_->logger = std::make_shared<spdlog::logger>("vixfs", sinks.begin(), sinks.end());
    lib->impl_->logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e [%t] %l vixfs: %v");
    lib->impl_->logger->set_level(spdlog::level::trace);
  } catch (const spdlog::spdlog_ex& e) {
    return fail(VIX_E_DISK_SUBSYSTEM_INIT_FAIL, std::string("cannot set up logging: ") + e.what());
  }

  lib->impl_->workers = std::make_unique<WorkerPool>(static_cast<size_t>(workers));
  if (auto started = lib->impl_->workers->start_all(); !started.ok()) {
    return fail(VIX_E_DISK_SUBSYSTEM_INIT_FAIL,
                "cannot start the async I/O workers: " + started.error().message);
  }

  Library* raw = lib.release();
  instance().store(raw);
  log::install(raw->impl_.get());
  for (const std::string& w : warnings) log::warn(w);
  if (!file_warning.empty()) log::warn(file_warning);
  log::info(std::string("vixfs ") + VIXFS_VERSION + " VixDiskLib initialized; transport modes " +
            supported_transport_modes() + (config_file.empty() ? "" : "; config " + config_file) +
            (lib_dir.empty() ? "" : "; libDir " + lib_dir));
  return ok();
}

void Library::exit() {
  std::lock_guard guard(init_mutex());
  Library* lib = instance().load();
  if (lib == nullptr) return;
  // Drain first, while the library is still reachable: callbacks of I/O accepted before Exit
  // still run (exactly once), and they may log.
  lib->impl_->workers->stop(WorkerPool::Pending::kRun);
  log::install(nullptr);
  instance().store(nullptr);
  delete lib;
}

Library* Library::get() {
  return instance().load();
}

int Library::log_level() const {
  return impl_->level_;
}

size_t Library::worker_count() const {
  return impl_->workers->threads();
}

bool Library::submit(std::function<void()> job) {
  return impl_->workers->submit(std::move(job));
}

const char* supported_transport_modes() {
  static const std::string modes = [] {
    std::string s;
    for (const std::string& m : known_transport_modes()) s += (s.empty() ? "" : ":") + m;
    return s;
  }();
  return modes.c_str();
}

}  // namespace vix
