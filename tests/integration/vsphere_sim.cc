#include "integration/vsphere_sim.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
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
  sim->env_file_ = sim->dir_ + "/vcsim.env";
  CommandResult r = run(sh_quote(std::string(VIXFS_SOURCE_DIR) + "/scripts/vcsim") + " start " +
                        sh_quote(sim->env_file_) + " " + args);
  if (r.exit_code != 0 || !read_env(sim->env_file_, sim->vars_)) {
    *error = "cannot start the simulator (scripts/vcsim start, exit " +
             std::to_string(r.exit_code) + "): " + r.output;
    return nullptr;
  }
  return sim;
}

void Simulator::stop() {
  if (env_file_.empty()) return;
  run(sh_quote(std::string(VIXFS_SOURCE_DIR) + "/scripts/vcsim") + " stop " + sh_quote(env_file_));
  env_file_.clear();
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

}  // namespace vixtest
