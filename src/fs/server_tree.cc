// The server tree's session with its server and the library connections of its (VM, snapshot)
// folders: one login at mount, shared by every connection and by Cleanup; shutdown disconnects
// them all. The inventory's side is server_tree_inventory.cc, snapshot.json server_tree_json.cc.
#include "fs/server_tree.h"

#include "common/log.h"
#include "vix/config_keys.h"
#include "vix/errors.h"
#include "vix/library.h"
#include "vsphere/session.h"

namespace vixfs {
namespace {

// VixDiskLib_Cleanup for one server: disks a killed vixfs left hot-added to the proxy VM.
void run_cleanup(const std::string& folder, const vix::ConnectSpec& spec) {
  if (auto r = vix::cleanup(spec); !r.ok()) {
    vix::log::error(folder + ": Cleanup: " + r.error().message);
  } else {
    vix::log::info(folder + ": Cleanup: cleaned " + std::to_string(r->cleaned_up) + ", remaining " +
                   std::to_string(r->remaining));
  }
}

// The server's credentials and scope; connections add their VM and the shared session.
vix::ConnectSpec server_spec(const ServerAddress& address, const ServerOptions& options) {
  vix::ConnectSpec spec;
  spec.server = address.host;
  spec.port = address.port;
  spec.thumbprint = options.thumbprint;
  spec.cred_type = VIXDISKLIB_CRED_UID;
  spec.user = options.user;
  spec.password = options.password;
  spec.config_scope = options.config_scope;
  return spec;
}

}  // namespace

vix::Result<ServerAddress> parse_server_url(const std::string& url) {
  const std::string scheme = "https://";
  if (url.rfind(scheme, 0) != 0) {
    return vix::fail(VIX_E_INVALID_ARG, "--server " + url + ": must start with https://");
  }
  std::string rest = url.substr(scheme.size());
  rest = rest.substr(0, rest.find('/'));
  ServerAddress a;
  if (!rest.empty() && rest[0] == '[') {  // [v6]:port
    const size_t close = rest.find(']');
    if (close == std::string::npos)
      return vix::fail(VIX_E_INVALID_ARG, "--server " + url + ": bad host");
    a.host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
  } else {
    const size_t colon = rest.find(':');
    a.host = rest.substr(0, colon);
    rest = colon == std::string::npos ? "" : rest.substr(colon);
  }
  if (!rest.empty()) {
    if (rest[0] != ':' || rest.size() < 2 || rest.size() > 6 ||
        rest.find_first_not_of("0123456789", 1) != std::string::npos) {
      return vix::fail(VIX_E_INVALID_ARG, "--server " + url + ": bad port");
    }
    const unsigned long port = std::stoul(rest.substr(1));
    if (port == 0 || port > 65535)
      return vix::fail(VIX_E_INVALID_ARG, "--server " + url + ": bad port");
    a.port = static_cast<uint32_t>(port);
  }
  if (a.host.empty()) return vix::fail(VIX_E_INVALID_ARG, "--server " + url + ": no host");
  return a;
}

vix::Result<std::unique_ptr<ServerTree>> ServerTree::mount(const ServerOptions& options,
                                                           Tree* tree) {
  std::unique_ptr<ServerTree> st(new ServerTree());
  st->options_ = options;
  st->tree_ = tree;
  VIX_ASSIGN_OR_RETURN(st->address_, parse_server_url(options.url));
  st->folder_ = options.alias.empty() ? st->address_.host : options.alias;
  if (st->folder_.find('/') != std::string::npos || st->folder_ == "." || st->folder_ == ".." ||
      st->folder_ == ".vixfs") {
    return vix::fail(VIX_E_INVALID_ARG, "--name " + st->folder_ + ": not usable as a folder name");
  }
  clock_gettime(CLOCK_REALTIME, &st->mounted_at_);

  // One login for the whole mount: every (VM, snapshot) connection and Cleanup use it, with the
  // library's options for this server.
  vix::Library* lib = vix::Library::get();
  if (lib == nullptr)
    return vix::fail(VIX_E_DISK_NOINIT, st->folder_ + ": library not initialized");
  vix::ConnectSpec login = server_spec(st->address_, options);
  login.server = options.url;
  VIX_ASSIGN_OR_RETURN(st->session_, vix::ServerSession::login(
                                         login, lib->config().scoped(options.config_scope.empty()
                                                                         ? st->address_.host
                                                                         : options.config_scope)));
  vix::log::info(st->folder_ + ": logged in to " + st->session_->endpoint() + " as " +
                 options.user);
  st->inventory_ = *st->session_->inventory();
  st->check_privileges();

  VIX_ASSIGN_OR_RETURN(int64_t ttl_seconds, lib->config().get(vix::kInventoryTtl));
  st->ttl_ = std::chrono::seconds(ttl_seconds);
  st->loaded_at_ = std::chrono::steady_clock::now();
  st->server_dir_ = tree->add_dir(tree->root(), st->folder_);
  st->by_name_ = tree->add_dir(st->server_dir_, "by-name");
  st->apply_inventory();
  vix::log::info(st->folder_ + ": " + std::to_string(st->inventory_.vms.size()) + " VMs");
  run_cleanup(st->folder_, st->spec_for(""));  // leftovers of a killed vixfs
  return st;
}

ServerTree::~ServerTree() {
  shutdown();
}

std::string ServerTree::current_write_policy(const std::string& vm) {
  std::lock_guard lock(mu_);
  auto it = power_.find(vm);
  const std::string state = it == power_.end() || it->second.empty() ? "unknown" : it->second;
  if (state != "poweredOff") {
    return "the VM's power state is " + state + " (only a powered-off VM's disks are written)";
  }
  if (auto r = privileges_.check("write", vm); !r.ok()) return r.error().message;
  return "";
}

vix::ConnectSpec ServerTree::spec_for(const std::string& vm) const {
  vix::ConnectSpec spec = server_spec(address_, options_);
  if (!vm.empty()) spec.vmx_spec = "moref=" + vm;
  spec.session = session_;
  return spec;
}

vix::Result<vix::Connection*> ServerTree::connection(const std::string& vm,
                                                     const std::string& snapshot) {
  // Connecting talks to the server (up to vixfs.soap.timeoutMs when it is silent): one at a time,
  // and without mu_, which stat (the write policy) and the inventory refresh take.
  std::lock_guard connecting(connect_mu_);
  auto key = std::make_pair(vm, snapshot);
  bool read_write = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = connections_.find(key); it != connections_.end()) return it->second.get();
    // Read-write only for what may be written: a powered-off VM's live disks.
    auto power = power_.find(vm);
    read_write = options_.read_write && snapshot.empty() && power != power_.end() &&
                 power->second == "poweredOff";
  }
  const std::string what = folder_ + "/" + vm + "/" + (snapshot.empty() ? "current" : snapshot);
  VIX_TRY(privilege_check("read", vm, what));
  vix::ConnectSpec spec = spec_for(vm);
  auto conn = vix::Connection::connect(spec, !read_write, snapshot, options_.transports);
  if (!conn.ok()) {
    vix::log::error(what + ": connect failed: " + vix::error_text(conn.error().code) + " (" +
                    conn.error().message + ")");
    return std::move(conn).error();
  }
  vix::log::info(what + (read_write ? ": connected read-write" : ": connected"));
  vix::Connection* raw = conn->get();
  std::lock_guard lock(mu_);
  connections_[key] = std::move(conn).value();
  return raw;
}

void ServerTree::shutdown() {
  {
    std::lock_guard lock(state_mu_);
    if (stopping_) return;  // the destructor calls it again after the unmount did
    stopping_ = true;
  }
  // At most one SOAP timeout (vixfs.soap.timeoutMs) when the server went silent mid-refresh.
  if (refresher_.joinable()) refresher_.join();
  remove_own_snapshots();
  stop_invalidations();
  std::map<std::pair<std::string, std::string>, std::unique_ptr<vix::Connection>> conns;
  {
    std::lock_guard connecting(connect_mu_);  // no connect still on its way into the map
    std::lock_guard lock(mu_);
    conns.swap(connections_);
  }
  for (auto& [key, conn] : conns) {
    const std::string what =
        folder_ + "/" + key.first + "/" + (key.second.empty() ? "current" : key.second);
    if (auto r = conn->disconnect(); !r.ok()) {
      vix::log::error(what + ": disconnect: " + r.error().message);
    } else {
      vix::log::info(what + ": disconnected");
    }
    conn.reset();
  }
  run_cleanup(folder_, spec_for(""));
  if (session_) {
    if (auto r = session_->logout(); !r.ok()) {
      vix::log::error(folder_ + ": logout: " + r.error().message);
    } else {
      vix::log::info(folder_ + ": logged out");
    }
    session_.reset();
  }
}

}  // namespace vixfs
