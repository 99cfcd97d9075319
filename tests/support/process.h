// Test support: the processes tests start (qemu-nbd, nbdkit, openssl s_server, the Python test
// servers, vcsim, the vixfs daemon) and the ports they listen on.
//
// One way to start, wait for and stop a child, so that no test leaves one behind: the destructor
// stops and reaps it, which also covers an ASSERT returning early; and a child started from the
// main thread (every test body and fixture) is killed by the kernel when the test binary dies
// (PR_SET_PDEATHSIG), so a crash leaves none either.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace vixtest {

struct ChildOptions {
  std::vector<std::string> argv;
  std::string program;           // what runs ("" = argv[0]); without a slash, looked up in $PATH
  std::vector<std::string> env;  // KEY=VALUE, set over the test's own environment
  std::string log;               // stdout and stderr go here ("" = /dev/null); stdin is /dev/null
  bool truncate_log = false;     // else appended: several servers of a test may share one log
};

// argv running `command` with /bin/sh -c "exec COMMAND": for commands written as shell text
// (quoting, redirections). exec keeps the pid the server's own.
std::vector<std::string> shell(const std::string& command);

class Child {
 public:
  // Starts the child in its own process group. started() is false when fork failed; a program
  // that cannot be run exits with status 127, "cannot run PROGRAM" in the log.
  explicit Child(ChildOptions options);
  ~Child();  // stop()
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const ChildOptions& options() const { return options_; }

  // Waits until ready() holds: true then; false when the child exits first or time runs out.
  bool wait_until(const std::function<bool()>& ready,
                  std::chrono::milliseconds timeout = std::chrono::seconds(15));
  bool wait_for_port(int port, std::chrono::milliseconds timeout =
                                   std::chrono::seconds(15));  // 127.0.0.1:port accepts
  bool wait_for_file(const std::string& path,
                     std::chrono::milliseconds timeout = std::chrono::seconds(15));  // not empty
  // The file has a line containing `text`.
  bool wait_for_line(const std::string& path, const std::string& text,
                     std::chrono::milliseconds timeout = std::chrono::seconds(15));

  // True while the child runs; reaps it once it has exited.
  bool running();
  // Waits up to `timeout` for the child to exit by itself; true if it has.
  bool wait_exit(std::chrono::milliseconds timeout);
  // The wait status once the child has exited (see WIFEXITED), -1 before.
  int status() const { return status_; }

  // Sends sig to the child's process group (a stopped child gets SIGCONT after it); no wait.
  bool signal(int sig);
  // SIGTERM, then SIGKILL when the child is still there after `grace`; always reaps. Idempotent.
  // Returns the wait status (-1 when the child never started).
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  // SIGKILL now, as a crash would; reaps.
  void kill_now();

  std::string log() const;

 private:
  void start();

  ChildOptions options_;
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

// A port on 127.0.0.1 that nothing listened on a moment ago: for a server the test starts next.
int free_port();
// True when a TCP connect to 127.0.0.1:port succeeds.
bool tcp_port_open(int port);
// True when a connect to the Unix socket at `path` succeeds.
bool unix_socket_open(const std::string& path);

// A server the test runs from a shell command on 127.0.0.1:port (qemu-nbd, nbdkit, s_server):
// ready once the port accepts. The command runs again after stop() with start(), on that port.
class PortServer {
 public:
  PortServer(std::string command, int port, std::string log);
  ~PortServer() = default;  // the child stops and is reaped with it
  PortServer(const PortServer&) = delete;
  PortServer& operator=(const PortServer&) = delete;

  // (Re)starts the command; true once it accepts connections.
  bool start();
  // SIGKILL, as a crash would; waits for the process.
  void stop();
  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string log() const;
  const std::string& command() const { return command_; }

 private:
  std::string command_;
  int port_;
  std::string log_;
  std::unique_ptr<Child> child_;
  bool ready_ = false;
};

// A socket listening on 127.0.0.1 on a port of its own that never says a word (unless the test
// accepts and talks): for timeouts. Closed on destruction.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  bool ok() const { return fd_ >= 0 && port_ > 0; }
  int port() const { return port_; }
  int fd() const { return fd_; }
  // Accepts one connection (blocking); the caller closes the fd it returns.
  int accept_one();

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace vixtest
