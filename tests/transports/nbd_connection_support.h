// Helpers for the nbd::Connection tests: server processes and one-call connections.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "nbd/connection.h"
#include "nbd/stream.h"
#include "support/fixtures.h"

namespace nbdconntest {

using namespace vix::nbd;
using vixtest::sh_quote;

inline uint16_t unused_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// A server process (run by /bin/sh -c "exec ..."), its output in a log; killed on destruction.
class ServerProcess {
 public:
  ServerProcess(const std::string& command, Endpoint where, std::string log)
      : where_(std::move(where)), log_(std::move(log)) {
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      std::string full = "exec " + command + " >>" + sh_quote(log_) + " 2>&1";
      execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    auto until = Clock::now() + std::chrono::seconds(15);
    while (Clock::now() < until) {
      auto s = connect_stream(where_, deadline_after_ms(1000));
      if (s.ok()) {
        ready_ = true;
        return;
      }
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~ServerProcess() { stop(SIGKILL); }
  // SIGTERM lets a server close its image cleanly (for the oracle to read it afterwards).
  void stop(int sig = SIGTERM) {
    if (pid_ > 0) {
      kill(-pid_, sig);
      kill(pid_, sig);
      int st = 0;
      waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }
  bool ready() const { return ready_; }
  std::string log() const {
    auto bytes = vixtest::read_file(log_);
    return std::string(bytes.begin(), bytes.end());
  }
  const Endpoint& where() const { return where_; }

 private:
  Endpoint where_;
  std::string log_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

inline Endpoint unix_endpoint(const std::string& path) {
  Endpoint e;
  e.unix_path = path;
  return e;
}

inline Endpoint tcp_endpoint(uint16_t port) {
  Endpoint e;
  e.host = "127.0.0.1";
  e.port = port;
  return e;
}

inline vix::Result<std::unique_ptr<Connection>> open_export(const Endpoint& where,
                                                            const std::string& name,
                                                            bool want_allocation = true) {
  VIX_ASSIGN_OR_RETURN(auto stream, connect_stream(where, deadline_after_ms(5000)));
  HandshakeOptions h;
  h.export_name = name;
  h.want_allocation = want_allocation;
  h.deadline = deadline_after_ms(5000);
  return Connection::handshake(std::move(stream), h);
}

#define ASSERT_OK(expr)                                                    \
  do {                                                                     \
    auto&& r_ = (expr);                                                    \
    ASSERT_TRUE(r_.ok()) << r_.error().code << ": " << r_.error().message; \
  } while (0)

}  // namespace nbdconntest
