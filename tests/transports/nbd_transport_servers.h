// Real NBD servers (qemu-nbd, nbdkit) for the nbd transport tests: started on a free port of
// 127.0.0.1 in their own process group, waited for until they accept, stopped by their pid.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "support/fixtures.h"
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

inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

inline bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

// One server process: `command` runs under /bin/sh with exec, its output in `log`.
class Server {
 public:
  Server(std::string command, int port, std::string log)
      : command_(std::move(command)), port_(port), log_(std::move(log)) {
    start();
  }
  ~Server() { stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts the command again (same port); true once it accepts connections.
  bool start() {
    stop();
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      const std::string full = "exec " + command_ + " >>" + vixtest::sh_quote(log_) + " 2>&1";
      execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      if (port_open(port_)) return ready_ = true;
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return ready_ = false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ready_ = false;
  }
  // SIGKILL, as a crash would; waits for the process.
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    ready_ = false;
  }
  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string log() const { return vixtest::run("cat " + vixtest::sh_quote(log_)).output; }
  const std::string& command() const { return command_; }

 private:
  std::string command_;
  int port_;
  std::string log_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace nbdtest
