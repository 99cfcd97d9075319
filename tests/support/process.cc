#include "support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

extern char** environ;

namespace vixtest {

namespace {

using Clock = std::chrono::steady_clock;

// The environment a child gets: the test's own, with `overrides` (KEY=VALUE) replacing or adding.
std::vector<std::string> child_environment(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& kv : overrides) {
    const std::string key = kv.substr(0, kv.find('=') + 1);
    std::erase_if(env, [&](const std::string& e) { return e.compare(0, key.size(), key) == 0; });
    env.push_back(kv);
  }
  return env;
}

// execve needs a path: resolved before fork, because the child may only make async-signal-safe
// calls (the test binary has threads) and a PATH search is not one.
std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    size_t colon = dirs.find(':', pos);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string candidate = dirs.substr(pos, colon - pos) + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    pos = colon + 1;
  }
  return name;  // execve fails, and the log says which program was missing
}

bool on_main_thread() {
  return static_cast<pid_t>(syscall(SYS_gettid)) == getpid();
}

}  // namespace

std::vector<std::string> shell(const std::string& command) {
  return {"/bin/sh", "-c", "exec " + command};
}

Child::Child(ChildOptions options) : options_(std::move(options)) {
  start();
}

Child::~Child() {
  stop();
}

void Child::start() {
  if (options_.argv.empty()) return;
  // Everything the child needs is made here: between fork and exec it may only make
  // async-signal-safe calls.
  const std::string program =
      resolve_program(options_.program.empty() ? options_.argv[0] : options_.program);
  std::vector<char*> argv;
  for (std::string& a : options_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = child_environment(options_.env);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string exec_failed = "cannot run " + program + "\n";
  const int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int out =
      options_.log.empty()
          ? open("/dev/null", O_WRONLY | O_CLOEXEC)
          : open(options_.log.c_str(),
                 O_WRONLY | O_CREAT | O_CLOEXEC | (options_.truncate_log ? O_TRUNC : O_APPEND),
                 0644);
  // A child of a thread that ends would get the death signal with that thread, not with the
  // test binary: only children of the main thread get it.
  const bool die_with_parent = on_main_thread();
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) dup2(out, 1), dup2(out, 2);
    execve(program.c_str(), argv.data(), envp.data());
    if (write(2, exec_failed.data(), exec_failed.size()) < 0) _exit(127);
    _exit(127);
  }
  if (pid_ > 0) setpgid(pid_, pid_);  // also here: a signal to the group may come before exec
  if (in >= 0) close(in);
  if (out >= 0) close(out);
}

bool Child::running() {
  if (pid_ <= 0 || reaped_) return false;
  siginfo_t info{};
  // WNOWAIT: the exited child stays a zombie, so its pid (the group's id) cannot be reused
  // while whatever it left in its group is killed.
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    reaped_ = true;  // not our child any more: nothing to wait for
    return false;
  }
  if (info.si_pid != pid_) return true;
  kill(-pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
  return false;
}

bool Child::wait_until(const std::function<bool()>& ready, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (ready()) return true;
    if (!running() || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool Child::wait_for_port(int port, std::chrono::milliseconds timeout) {
  return wait_until([port] { return tcp_port_open(port); }, timeout);
}

bool Child::wait_for_file(const std::string& path, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        struct stat st;
        return stat(path.c_str(), &st) == 0 && st.st_size > 0;
      },
      timeout);
}

bool Child::wait_for_line(const std::string& path, const std::string& text,
                          std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        std::ifstream in(path);
        for (std::string line; std::getline(in, line);)
          if (line.find(text) != std::string::npos) return true;
        return false;
      },
      timeout);
}

bool Child::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (running()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

bool Child::signal(int sig) {
  // To the child alone: its group may hold helpers (fusermount3) that the signal would kill.
  return running() && kill(pid_, sig) == 0;
}

int Child::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  if (running()) {
    kill(-pid_, SIGTERM);
    kill(-pid_, SIGCONT);  // a stopped child acts on SIGTERM only once it runs
    if (!wait_exit(grace)) kill_now();
  }
  return status_;
}

void Child::kill_now() {
  if (pid_ <= 0 || reaped_) return;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);  // in case it had not reached setpgid
  waitpid(pid_, &status_, 0);
  reaped_ = true;
}

std::string Child::log() const {
  if (options_.log.empty()) return "";
  std::ifstream in(options_.log, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

bool tcp_port_open(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

bool unix_socket_open(const std::string& path) {
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) return false;
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

PortServer::PortServer(std::string command, int port, std::string log)
    : command_(std::move(command)), port_(port), log_(std::move(log)) {
  start();
}

bool PortServer::start() {
  stop();
  child_ = std::make_unique<Child>(ChildOptions{shell(command_), "", {}, log_});
  ready_ = child_->wait_for_port(port_);
  return ready_;
}

void PortServer::stop() {
  if (child_) child_->kill_now();
  child_.reset();
  ready_ = false;
}

std::string PortServer::log() const {
  std::ifstream in(log_, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

SilentListener::SilentListener() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd_, 4) == 0 &&
      getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port_ = ntohs(a.sin_port);
  }
}

SilentListener::~SilentListener() {
  if (fd_ >= 0) close(fd_);
}

int SilentListener::accept_one() {
  return accept(fd_, nullptr, nullptr);
}

}  // namespace vixtest
