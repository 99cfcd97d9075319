// Helpers for the nbd::Connection tests: server processes and one-call connections.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "nbd/connection.h"
#include "net/stream.h"
#include "support/fixtures.h"
#include "support/process.h"

namespace nbdconntest {

using namespace vix::nbd;
using namespace vix::net;
using vixtest::sh_quote;

// A server process (a shell command, exec'ed), its output in a log; ready once `where` accepts
// an NBD stream. Stopped (SIGTERM, then SIGKILL) and reaped on destruction.
class ServerProcess {
 public:
  ServerProcess(const std::string& command, Endpoint where, std::string log)
      : where_(std::move(where)),
        child_(vixtest::ChildOptions{vixtest::shell(command), "", {}, log}) {
    ready_ =
        child_.wait_until([this] { return connect_stream(where_, deadline_after_ms(1000)).ok(); });
  }
  // SIGTERM lets a server close its image cleanly (for the oracle to read it afterwards).
  void stop() { child_.stop(); }
  bool ready() const { return ready_; }
  std::string log() const { return child_.log(); }
  const Endpoint& where() const { return where_; }

 private:
  Endpoint where_;
  vixtest::Child child_;
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
