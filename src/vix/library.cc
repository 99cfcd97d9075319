#include "vix/library.h"

#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "transports/transport.h"

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

constexpr int kDefaultLogLevel = 3;
constexpr int kDefaultWorkers = 4;
constexpr int kMaxWorkers = 64;

}  // namespace

struct Library::Impl {
  std::shared_ptr<spdlog::logger> logger;
  int level = kDefaultLogLevel;
  // Serialises the caller's callbacks, which need not be thread-safe; recursive because a
  // callback may call back into the library, which may log.
  std::recursive_mutex callback_mu;

  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<std::function<void()>> queue;
  bool stopping = false;
  std::vector<std::thread> workers;

  void worker_loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(queue_mu);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping and drained
        job = std::move(queue.front());
        queue.pop_front();
      }
      try {
        job();
      } catch (...) {
        // Jobs report their own errors through their completion; nothing may escape a worker.
      }
    }
  }

  void stop_workers() {
    {
      std::lock_guard lock(queue_mu);
      stopping = true;
    }
    queue_cv.notify_all();
    for (std::thread& t : workers)
      if (t.joinable()) t.join();
    workers.clear();
  }
};

Library::Library() : impl_(std::make_unique<Impl>()) {}

Library::~Library() {
  if (impl_) impl_->stop_workers();
}

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
  VIX_ASSIGN_OR_RETURN(int64_t level,
                       config.get_int("vixDiskLib.transport.LogLevel", kDefaultLogLevel));
  VIX_ASSIGN_OR_RETURN(int64_t workers, config.get_int("vixfs.asyncWorkers", kDefaultWorkers));
  if (workers < 1 || workers > kMaxWorkers) {
    return fail(VIX_E_INVALID_ARG, config_file + ": vixfs.asyncWorkers must be 1.." +
                                       std::to_string(kMaxWorkers) + ", got " +
                                       std::to_string(workers));
  }

  auto lib = std::make_unique<Library>();
  lib->config_ = std::move(config);
  lib->callbacks_ = callbacks;
  lib->impl_->level = static_cast<int>(std::clamp<int64_t>(level, 0, 6));

  std::string file_warning;
  try {
    std::vector<spdlog::sink_ptr> sinks;
    std::string log_file = lib->config_.get("log.fileName");
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

  for (int i = 0; i < workers; ++i) {
    try {
      lib->impl_->workers.emplace_back([impl = lib->impl_.get()] { impl->worker_loop(); });
    } catch (const std::system_error& e) {
      lib->impl_->stop_workers();
      return fail(VIX_E_DISK_SUBSYSTEM_INIT_FAIL,
                  std::string("cannot start the async I/O workers: ") + e.what());
    }
  }

  Library* raw = lib.release();
  instance().store(raw);
  for (const std::string& w : warnings) raw->warn(w);
  if (!file_warning.empty()) raw->warn(file_warning);
  raw->info(std::string("vixfs ") + VIXFS_VERSION + " VixDiskLib initialized; transport modes " +
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
  lib->impl_->stop_workers();
  instance().store(nullptr);
  delete lib;
}

Library* Library::get() {
  return instance().load();
}

int Library::log_level() const {
  return impl_->level;
}

size_t Library::worker_count() const {
  return impl_->workers.size();
}

bool Library::submit(std::function<void()> job) {
  {
    std::lock_guard lock(impl_->queue_mu);
    if (impl_->stopping) return false;
    impl_->queue.push_back(std::move(job));
  }
  impl_->queue_cv.notify_one();
  return true;
}

void Library::info(std::string_view msg) {
  if (impl_->level < 3) return;
  if (callbacks_.log) {
    std::lock_guard lock(impl_->callback_mu);
    call_log_func(callbacks_.log, "%.*s\n", static_cast<int>(msg.size()), msg.data());
  } else {
    impl_->logger->info("{}", msg);
  }
}

void Library::debug(std::string_view msg) {
  if (impl_->level < 5) return;
  if (callbacks_.log) {
    std::lock_guard lock(impl_->callback_mu);
    call_log_func(callbacks_.log, "%.*s\n", static_cast<int>(msg.size()), msg.data());
  } else {
    impl_->logger->debug("{}", msg);
  }
}

void Library::warn(std::string_view msg) {
  if (impl_->level < 2) return;
  if (callbacks_.warn) {
    std::lock_guard lock(impl_->callback_mu);
    call_log_func(callbacks_.warn, "%.*s\n", static_cast<int>(msg.size()), msg.data());
  } else {
    impl_->logger->warn("{}", msg);
  }
}

void Library::error(std::string_view msg) {
  if (impl_->level < 1) return;
  if (callbacks_.warn) {
    std::lock_guard lock(impl_->callback_mu);
    call_log_func(callbacks_.warn, "%.*s\n", static_cast<int>(msg.size()), msg.data());
  } else {
    impl_->logger->error("{}", msg);
  }
}

void Library::panic(std::string_view msg) {
  if (callbacks_.panic) {
    std::lock_guard lock(impl_->callback_mu);
    call_log_func(callbacks_.panic, "%.*s\n", static_cast<int>(msg.size()), msg.data());
  } else {
    impl_->logger->critical("{}", msg);
  }
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
