#include "support/vsphere_sim.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "vsphere/client.h"

namespace vixtest {

static bool read_env(const std::string& path, std::map<std::string, std::string>& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out.count("VCSIM_URL") == 1;
}

std::unique_ptr<Simulator> Simulator::start_with_samples(const std::string& dir, int size_mib,
                                                         const std::string& args,
                                                         std::string* error) {
  // The VMFS6 VM's SEsparse deltas come from the tool this build made (tests/tools/).
  auto made = run("VIXFS_MAKE_SESPARSE=" + sh_quote(VIXFS_MAKE_SESPARSE) + " bash " +
                  sh_quote(std::string(VIXFS_SOURCE_DIR) + "/scripts/sample-vms") + " " +
                  sh_quote(dir) + " " + std::to_string(size_mib));
  if (made.exit_code != 0) {
    *error = "scripts/sample-vms: " + made.output;
    return nullptr;
  }
  return start(args + " -samples " + sh_quote(dir), false, error);
}

std::unique_ptr<Simulator> Simulator::start(const std::string& args, bool share_env,
                                            std::string* error) {
  std::unique_ptr<Simulator> sim(new Simulator());
  const char* shared = getenv("VIXFS_VCSIM_ENV");
  if (share_env && shared && *shared) {
    if (!read_env(shared, sim->vars_)) {
      *error = std::string("VIXFS_VCSIM_ENV=") + shared + ": no VCSIM_URL in that file";
      return nullptr;
    }
    return sim;
  }
  const char* tmpdir = getenv("TMPDIR");
  std::string pattern = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/vixfs-vcsim-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    *error = "mkdtemp " + pattern + " failed";
    return nullptr;
  }
  sim->dir_ = buf.data();
  const std::string script = std::string(VIXFS_SOURCE_DIR) + "/scripts/vcsim";
  CommandResult built = run(sh_quote(script) + " build");
  std::string binary = built.output;
  while (!binary.empty() && binary.back() == '\n') binary.pop_back();
  binary.erase(0, binary.rfind('\n') + 1);  // the last line is the binary's path
  if (built.exit_code != 0 || binary.empty()) {
    *error = "cannot build the simulator (scripts/vcsim build, exit " +
             std::to_string(built.exit_code) + "): " + built.output;
    return nullptr;
  }
  const std::string env_file = sim->dir_ + "/vcsim.env";
  sim->child_ = std::make_unique<Child>(
      ChildOptions{shell(sh_quote(binary) + " -env-file " + sh_quote(env_file) + " " + args),
                   "",
                   {},
                   sim->dir_ + "/vcsim.log"});
  // Setting up -samples or -rdm disks takes a while: as long as scripts/vcsim start waits.
  if (!sim->child_->wait_for_file(env_file, std::chrono::seconds(60)) ||
      !read_env(env_file, sim->vars_)) {
    *error = "cannot start the simulator (" + binary + " " + args + ", " +
             (sim->child_->running() ? "not ready after 60 s" : "exited") +
             "): " + sim->child_->log();
    return nullptr;
  }
  return sim;
}

void Simulator::stop() {
  // vcsim removes its datastore folders and certificate on SIGTERM: give it the time
  // scripts/vcsim stop gives it.
  if (child_) child_->stop(std::chrono::seconds(10));
  child_.reset();
}

Simulator::~Simulator() {
  stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string Simulator::get(const std::string& key) const {
  auto it = vars_.find(key);
  return it == vars_.end() ? std::string() : it->second;
}

std::vector<std::string> Simulator::mount_args(const std::string& user,
                                               const std::string& password_file,
                                               const std::string& transports) const {
  std::vector<std::string> a = {
      "--server",    get("VCSIM_URL"), "--user",          user,     "--password-file",
      password_file, "--thumbprint",   get("VCSIM_SHA1"), "--name", "sim"};
  if (!transports.empty()) a.insert(a.end(), {"--transports", transports});
  return a;
}

std::string Simulator::local_file(const std::string& datastore_path) const {
  const size_t close = datastore_path.find("] ");
  if (close == std::string::npos) return "";
  return get("VCSIM_DS_LocalDS_0") + "/" + datastore_path.substr(close + 2);
}

vix::ConnectSpec Simulator::connect_spec(const std::string& vm, const std::string& user,
                                         const std::string& password) const {
  vix::ConnectSpec s;
  s.server = get("VCSIM_HOST");
  s.port = static_cast<uint32_t>(std::stoul(get("VCSIM_PORT")));
  s.thumbprint = get("VCSIM_SHA1");
  s.cred_type = VIXDISKLIB_CRED_UID;
  s.user = user;
  s.password = password;
  if (!vm.empty()) s.vmx_spec = "moref=" + vm;
  return s;
}

std::unique_ptr<vix::vsphere::Client> Simulator::login(const std::string& user,
                                                       const std::string& password,
                                                       std::string* error) const {
  vix::vsphere::ConnectOptions o;
  o.url = get("VCSIM_URL");
  o.thumbprint = get("VCSIM_SHA1");
  auto c = vix::vsphere::Client::connect(o);
  if (!c.ok()) {
    *error = c.error().message;
    return nullptr;
  }
  if (auto r = (*c)->login(user, password); !r.ok()) {
    *error = r.error().message;
    return nullptr;
  }
  return std::move(c).value();
}

std::string Simulator::snapshot(const std::string& user, const std::string& password,
                                const std::string& vm, const std::string& name,
                                const std::string& description, std::string* error) const {
  auto c = login(user, password, error);
  if (!c) return "";
  auto snap = c->create_snapshot(vm, name, description, false, false);
  (void)c->logout();
  if (!snap.ok()) {
    *error = "create_snapshot: " + snap.error().message;
    return "";
  }
  return *snap;
}

std::string Simulator::nfc_dir() const {
  return get("VCSIM_NFC_DIR");
}

static std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Simulator::nfc_log() const {
  const std::string dir = nfc_dir();
  return dir.empty() ? std::string() : slurp(dir + "/nfc.log");
}

bool Simulator::set_nfc_faults(const std::string& text, std::string* error) const {
  const std::string dir = nfc_dir();
  if (dir.empty()) {
    *error = "the simulator was started without -nfc";
    return false;
  }
  const std::string tmp = dir + "/faults.tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!text.empty() && text.back() != '\n') out << '\n';
    out.close();
    if (!out) {
      *error = "cannot write " + tmp;
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, dir + "/faults", ec);
  if (ec) {
    *error = "rename " + tmp + ": " + ec.message();
    return false;
  }
  return true;
}

// Polls `done` every 20 ms for up to `timeout`.
static bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

bool Simulator::kill_nfc(std::string* error) {
  const std::string dir = nfc_dir();
  if (dir.empty()) {
    *error = "the simulator was started without -nfc";
    return false;
  }
  const int port = std::atoi(get("VCSIM_NFC_PORT").c_str());
  const pid_t pid = static_cast<pid_t>(std::atol(slurp(dir + "/pid").c_str()));
  if (pid <= 0) {
    *error = "no pid in " + dir + "/pid";
    return false;
  }
  if (::kill(pid, SIGKILL) != 0 && errno != ESRCH) {
    *error = "kill " + std::to_string(pid) + ": " + strerror(errno);
    return false;
  }
  if (!poll_until([&] { return !tcp_port_open(port); }, std::chrono::seconds(10))) {
    *error = "the NFC server's port " + std::to_string(port) + " still accepts after SIGKILL";
    return false;
  }
  return true;
}

bool Simulator::restart_nfc(std::string* error) {
  const std::string dir = nfc_dir();
  const std::string bin = get("VCSIM_BIN");
  if (dir.empty() || bin.empty()) {
    *error = "the simulator was started without -nfc (no VCSIM_NFC_DIR or VCSIM_BIN)";
    return false;
  }
  const int port = std::atoi(get("VCSIM_NFC_PORT").c_str());
  // Everything exec needs is made before fork: only async-signal-safe calls after it.
  const std::string out = dir + "/nfc-serve.out";
  std::vector<std::string> args = {bin, "nfc-serve", "-dir", dir};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Forked twice, in a session of its own: init adopts it, so no test reaps or kills it by
  // accident; the simulator stops it at exit (DIR/pid) and it watches the simulator itself.
  const pid_t child = fork();
  if (child < 0) {
    *error = std::string("fork: ") + strerror(errno);
    return false;
  }
  if (child == 0) {
    setsid();
    if (fork() != 0) _exit(0);
    const int null_fd = open("/dev/null", O_RDONLY);
    const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd >= 0) dup2(null_fd, 0);
    if (out_fd >= 0) {
      dup2(out_fd, 1);
      dup2(out_fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!poll_until([&] { return tcp_port_open(port); }, std::chrono::seconds(15))) {
    *error = "the NFC server did not accept on port " + std::to_string(port) +
             " within 15 s: " + slurp(out);
    return false;
  }
  return true;
}

std::string Simulator::host_https_log() const {
  const std::string dir = get("VCSIM_HOST_HTTPS_DIR");
  return dir.empty() ? std::string() : slurp(dir + "/host.log");
}

bool Simulator::set_host_https_faults(const std::string& text, std::string* error) const {
  const std::string dir = get("VCSIM_HOST_HTTPS_DIR");
  if (dir.empty()) {
    *error = "the simulator was started without -host-https";
    return false;
  }
  const std::string tmp = dir + "/faults.tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text << '\n';
    out.close();
    if (!out) {
      *error = "cannot write " + tmp;
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, dir + "/faults", ec);
  if (ec) *error = "rename " + tmp + ": " + ec.message();
  return !ec;
}

}  // namespace vixtest
