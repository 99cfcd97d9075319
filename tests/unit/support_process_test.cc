// The child-process and port helpers every server test relies on (tests/support/process.h):
// whatever a test does, the child and what it started are gone when the Child is.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "support/fixtures.h"
#include "support/process.h"

using vixtest::Child;
using vixtest::ChildOptions;
using vixtest::sh_quote;
using vixtest::TempDir;

namespace {

// Gone, or (reparented to an init that does not reap) a zombie: either way not running.
bool not_running(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  return state == "Z";
}

TEST(SupportChild, LeavingTheScopeStopsAndReapsTheChildAndItsGroup) {
  TempDir dir;
  const std::string gc = dir.file("grandchild");
  pid_t pid = 0;
  pid_t grandchild = 0;
  {
    Child c({vixtest::shell("sleep 300 & echo $! > " + sh_quote(gc) + "; exec sleep 300"),
             "",
             {},
             dir.file("log")});
    ASSERT_TRUE(c.started());
    ASSERT_TRUE(c.wait_for_file(gc)) << c.log();
    pid = c.pid();
    std::ifstream in(gc);
    in >> grandchild;
    ASSERT_GT(grandchild, 0);
    EXPECT_TRUE(c.running());
  }  // what an ASSERT returning early does too
  EXPECT_EQ(kill(pid, 0), -1) << "the child is still there, not even reaped";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!not_running(grandchild) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(not_running(grandchild)) << "what the child started is still running";
}

TEST(SupportChild, StopEscalatesToSigkillAfterTheGrace) {
  TempDir dir;
  const std::string ready = dir.file("ready");
  Child c(
      {{"sh", "-c", "trap '' TERM; echo up > " + sh_quote(ready) + "; while :; do sleep 1; done"},
       "",
       {},
       dir.file("log")});
  ASSERT_TRUE(c.wait_for_file(ready)) << c.log();
  const auto t0 = std::chrono::steady_clock::now();
  const int status = c.stop(std::chrono::milliseconds(300));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_FALSE(c.running());
}

TEST(SupportChild, ExitStatusEnvironmentAndLog) {
  TempDir dir;
  Child c(
      {{"sh", "-c", "echo \"said $GREETING\"; exit 3"}, "", {"GREETING=hello"}, dir.file("log")});
  EXPECT_TRUE(c.wait_for_line(dir.file("log"), "said hello")) << c.log();
  ASSERT_TRUE(c.wait_exit(std::chrono::seconds(5)));
  EXPECT_TRUE(WIFEXITED(c.status()) && WEXITSTATUS(c.status()) == 3) << c.status();

  Child missing({{"no-such-program-here"}, "", {}, dir.file("missing.log")});
  ASSERT_TRUE(missing.wait_exit(std::chrono::seconds(5)));
  EXPECT_EQ(WEXITSTATUS(missing.status()), 127);
  EXPECT_NE(missing.log().find("cannot run no-such-program-here"), std::string::npos)
      << missing.log();
  // Waiting on a child that has exited says so at once instead of waiting out the timeout.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(missing.wait_for_file(dir.file("never"), std::chrono::seconds(30)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(SupportPorts, FreePortIsClosedAndASilentListenerIsOpen) {
  const int port = vixtest::free_port();
  ASSERT_GT(port, 0);
  EXPECT_FALSE(vixtest::tcp_port_open(port));
  vixtest::SilentListener silent;
  ASSERT_TRUE(silent.ok());
  EXPECT_TRUE(vixtest::tcp_port_open(silent.port()));
}

}  // namespace
