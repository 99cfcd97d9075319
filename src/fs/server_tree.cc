#include "fs/server_tree.h"

#include <cstdio>
#include <set>

#include "common/log.h"
#include "fs/disk_file.h"
#include "vix/config_keys.h"
#include "vix/errors.h"
#include "vix/library.h"
#include "vsphere/session.h"

namespace vixfs {
namespace {

namespace vs = vix::vsphere;

// VixDiskLib_Cleanup for one server: disks a killed vixfs left hot-added to the proxy VM.
void run_cleanup(const std::string& folder, const vix::ConnectSpec& spec) {
  if (auto r = vix::cleanup(spec); !r.ok()) {
    vix::log::error(folder + ": Cleanup: " + r.error().message);
  } else {
    vix::log::info(folder + ": Cleanup: cleaned " + std::to_string(r->cleaned_up) + ", remaining " +
                   std::to_string(r->remaining));
  }
}

vix::ConnectSpec cleanup_spec(const ServerAddress& address, const ServerOptions& options) {
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

timespec from_ns(int64_t ns) {
  timespec t{};
  if (ns > 0) {
    t.tv_sec = static_cast<time_t>(ns / 1000000000);
    t.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  return t;
}

// A name unique among `taken`: the name itself, else name~moref.
std::string unique_name(const std::string& name, const std::string& moref,
                        std::set<std::string>* taken) {
  std::string n = escape_name(name);
  if (n.empty() || n == "." || n == ".." || taken->count(n)) n += "~" + moref;
  taken->insert(n);
  return n;
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

std::string escape_name(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (c == '/') {
      out += "%2F";
    } else if (c == '%') {
      out += "%25";
    } else if (c == '\0') {
      out += "%00";
    } else {
      out += c;
    }
  }
  return out;
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

  vs::ConnectOptions co;
  co.url = options.url;
  co.thumbprint = options.thumbprint;
  if (auto* lib = vix::Library::get()) {
    co.ca_file = lib->config().get(vix::kTlsCaFile);
    VIX_ASSIGN_OR_RETURN(co.timeout_ms, vix::soap_timeout_ms(lib->config()));
  }
  VIX_ASSIGN_OR_RETURN(st->client_, vs::Client::connect(co));
  VIX_TRY(st->client_->login(options.user, options.password));
  vix::log::info(st->folder_ + ": logged in to " + st->client_->endpoint() + " as " + options.user);
  auto inv = st->client_->inventory();
  if (!inv.ok()) {
    (void)st->client_->logout();
    return std::move(inv).error();
  }
  st->inventory_ = std::move(inv).value();

  if (auto* lib = vix::Library::get()) {
    auto ttl = lib->config().get(vix::kInventoryTtl);
    if (!ttl.ok()) {
      (void)st->client_->logout();
      return std::move(ttl).error();
    }
    st->ttl_ = std::chrono::seconds(*ttl);
  }
  st->loaded_at_ = std::chrono::steady_clock::now();
  st->server_dir_ = tree->add_dir(tree->root(), st->folder_);
  st->by_name_ = tree->add_dir(st->server_dir_, "by-name");
  st->apply_inventory();
  vix::log::info(st->folder_ + ": " + std::to_string(st->inventory_.vms.size()) + " VMs");
  run_cleanup(st->folder_, cleanup_spec(st->address_, options));  // leftovers of a killed vixfs
  return st;
}

ServerTree::~ServerTree() {
  shutdown();
}

void ServerTree::maybe_refresh() {
  if (ttl_.count() == 0) return;
  std::unique_lock lock(state_mu_);
  if (!refreshing_ && !stopping_ && std::chrono::steady_clock::now() - loaded_at_ >= ttl_) {
    refreshing_ = true;
    if (refresher_.joinable()) refresher_.join();  // finished: refreshing_ was false
    refresher_ = std::thread([this] { refresh(); });
  }
  // A slow or silent server costs a listing this long at most; the old view is served after.
  state_cv_.wait_for(lock, kRefreshWait, [this] { return !refreshing_; });
}

void ServerTree::refresh() {
  auto inv = client_ ? client_->inventory()
                     : vix::Result<vs::Inventory>(vix::fail(VIX_E_FAIL, "logged out"));
  if (!inv.ok()) {
    vix::log::error(folder_ + ": inventory refresh failed, keeping the old tree: " +
                    vix::error_text(inv.error().code) + " (" + inv.error().message + ")");
  } else {
    std::lock_guard lock(refresh_mu_);
    inventory_ = std::move(inv).value();
    apply_inventory();
    // Before the waiters go on, so what they list next is the new tree. A lookup waiting here
    // holds its folder's lock, which an invalidation of that folder waits for (at most the
    // refresh wait).
    if (invalidate_) {
      auto changes = tree_->take_changes();
      if (!changes.empty()) invalidate_(std::move(changes));
    }
  }
  std::lock_guard lock(state_mu_);
  loaded_at_ = std::chrono::steady_clock::now();
  refreshing_ = false;
  state_cv_.notify_all();
}

void ServerTree::apply_inventory() {
  std::set<std::string> vms;
  std::set<std::pair<std::string, std::string>> snaps;
  {
    std::lock_guard lock(mu_);
    for (const auto& vm : inventory_.vms) {
      std::string& state = power_[vm.moref];
      if (options_.read_write && !state.empty() && state != vm.power_state) {
        vix::log::info(
            folder_ + "/" + vm.moref + ": power state " + state + " -> " + vm.power_state +
            (vm.power_state == "poweredOff" ? "" : "; its current/ disks are read-only"));
      }
      state = vm.power_state;
    }
  }
  for (const auto& vm : inventory_.vms) {
    vms.insert(vm.moref);
    auto it = vm_dirs_.find(vm.moref);
    if (it == vm_dirs_.end()) {
      const fuse_ino_t dir = tree_->add_dir(server_dir_, vm.moref);
      if (dir == 0) continue;
      it = vm_dirs_.emplace(vm.moref, dir).first;
      add_snapshot(dir, vm, nullptr, vm.disks);
      vix::log::info(folder_ + "/" + vm.moref + ": VM " + vm.name);
    } else if (live_disks_changed(vm)) {
      // A disk added or removed, or a new delta after a snapshot: current/ is made anew; files
      // already open keep reading what they opened.
      tree_->unlink(it->second, "current");
      add_snapshot(it->second, vm, nullptr, vm.disks);
      vix::log::info(folder_ + "/" + vm.moref + "/current: the VM's disks changed");
    }
    for (const vs::Snapshot* s : vs::flatten(vm.snapshots)) {
      auto key = std::make_pair(vm.moref, s->moref);
      snaps.insert(key);
      if (snap_dirs_.count(key)) continue;
      add_snapshot(it->second, vm, s, s->disks);
      snap_dirs_[key] = tree_->lookup(it->second, s->moref);
      vix::log::info(folder_ + "/" + vm.moref + "/" + s->moref + ": snapshot " + s->name);
    }
  }
  for (auto it = snap_dirs_.begin(); it != snap_dirs_.end();) {
    if (snaps.count(it->first)) {
      ++it;
      continue;
    }
    if (auto vm = vm_dirs_.find(it->first.first); vm != vm_dirs_.end()) {
      tree_->unlink(vm->second, it->first.second);
    }
    vix::log::info(folder_ + "/" + it->first.first + "/" + it->first.second + ": snapshot gone");
    it = snap_dirs_.erase(it);
  }
  for (auto it = vm_dirs_.begin(); it != vm_dirs_.end();) {
    if (vms.count(it->first)) {
      ++it;
      continue;
    }
    tree_->unlink(server_dir_, it->first);
    vix::log::info(folder_ + "/" + it->first + ": VM gone");
    it = vm_dirs_.erase(it);
  }
  update_by_name();
}

bool ServerTree::live_disks_changed(const vs::VirtualMachine& vm) {
  std::lock_guard lock(mu_);
  for (auto it = snapshots_.rbegin(); it != snapshots_.rend(); ++it) {
    const SnapshotEntry& e = **it;
    if (!e.current || e.vm_moref != vm.moref) continue;
    if (e.disks.size() != vm.disks.size()) return true;
    for (size_t i = 0; i < e.disks.size(); ++i) {
      if (e.disks[i].datastore_path != vm.disks[i].file_name() ||
          e.disks[i].label != vm.disks[i].label) {
        return true;
      }
    }
    return false;
  }
  return false;
}

// by-name/<vm name>/<snapshot name> -> ../../<vm moRef>/<snapshot moRef>, changed in place so a
// refresh adds no nodes when nothing changed.
void ServerTree::update_by_name() {
  std::map<std::string, std::map<std::string, std::string>> want;
  std::set<std::string> vm_names;
  for (const auto& vm : inventory_.vms) {
    auto& links = want[unique_name(vm.name, vm.moref, &vm_names)];
    std::set<std::string> snap_names;
    for (const vs::Snapshot* s : vs::flatten(vm.snapshots)) {
      links[unique_name(s->name, s->moref, &snap_names)] = "../../" + vm.moref + "/" + s->moref;
    }
  }
  for (const auto& e : tree_->list(by_name_)) {
    if (!want.count(e.name)) tree_->unlink(by_name_, e.name);
  }
  for (const auto& [vm_name, links] : want) {
    fuse_ino_t dir = tree_->lookup(by_name_, vm_name);
    if (dir == 0) dir = tree_->add_dir(by_name_, vm_name);
    if (dir == 0) continue;
    for (const auto& e : tree_->list(dir)) {
      Node n;
      auto it = links.find(e.name);
      if (it == links.end() || !tree_->get(e.ino, &n) || n.text != it->second) {
        tree_->unlink(dir, e.name);
      }
    }
    for (const auto& [name, target] : links) {
      if (tree_->lookup(dir, name) == 0) tree_->add_symlink(dir, name, target);
    }
  }
}

void ServerTree::add_snapshot(fuse_ino_t vm_dir, const vs::VirtualMachine& vm,
                              const vs::Snapshot* snap, const std::vector<vs::VirtualDisk>& disks) {
  const std::string snap_ref = snap ? snap->moref : "";
  const fuse_ino_t dir = tree_->add_dir(vm_dir, snap ? snap->moref : "current");
  const timespec mtime = snap ? from_ns(snap->create_time_ns) : mounted_at_;
  auto entry = std::make_unique<SnapshotEntry>();
  entry->vm_moref = vm.moref;
  entry->vm_name = vm.name;
  if (snap) {
    entry->current = false;
    entry->snapshot.moref = snap->moref;
    entry->snapshot.name = snap->name;
    entry->snapshot.description = snap->description;
    entry->snapshot.create_time = snap->create_time;
    entry->snapshot.create_time_ns = snap->create_time_ns;
    entry->snapshot.quiesced = snap->quiesced;
  }
  SnapshotEntry* e = entry.get();
  std::set<std::string> names;
  for (const vs::VirtualDisk& d : disks) {
    std::string file = d.slot_name() + ".img";
    if (!names.insert(file).second) file = d.slot_name() + "~" + std::to_string(d.key) + ".img";
    e->disks.push_back({file, d.label, d.file_name(), d.capacity_bytes, ""});
  }
  for (size_t i = 0; i < e->disks.size(); ++i) {
    const DiskEntry& de = e->disks[i];
    const std::string vm_ref = vm.moref;
    auto file = std::make_shared<DiskFile>(
        [this, vm_ref, snap_ref]() { return connection(vm_ref, snap_ref); }, de.datastore_path,
        folder_ + "/" + vm.moref + "/" + (snap ? snap_ref : "current") + "/" + de.file,
        de.capacity);
    file->set_on_open([this, e, i](const std::string& transport, uint64_t capacity) {
      std::string json;
      {
        std::lock_guard lock(mu_);
        e->disks[i].transport = transport;
        e->disks[i].capacity = capacity;  // the disk's own capacity wins over the inventory's
        json = render_json(*e);
      }
      tree_->set_text(e->json, std::move(json));
    });
    if (options_.read_write) {
      if (snap && options_.redo_dir.empty()) {
        file->set_write_policy([] {
          return std::string("snapshot disks are never written (the mount has -o noredo)");
        });
      } else if (snap) {
        // The snapshot itself is never written: a redo log takes the writes.
        file->set_write_policy([] { return std::string(); });
        const std::string stem = de.file.substr(0, de.file.rfind(".img"));
        file->set_redo_log({options_.redo_dir + "/" + folder_ + "/" + vm.moref + "/" + snap_ref +
                                "/" + stem + ".redo.vmdk",
                            options_.keep_redo});
      } else {
        file->set_write_policy([this, vm_ref] { return current_write_policy(vm_ref); });
      }
    }
    tree_->add_disk(dir, de.file, std::move(file), mtime);
  }
  e->json = tree_->add_text(dir, "snapshot.json", render_json(*e));
  std::lock_guard lock(mu_);
  snapshots_.push_back(std::move(entry));
}

std::string ServerTree::render_json(const SnapshotEntry& e) const {
  const vs::Snapshot* s = e.current ? nullptr : &e.snapshot;
  std::string j = "{\n";
  j += "  \"moref\": " + (s ? json_string(s->moref) : "null") + ",\n";
  j += "  \"name\": " + (s ? json_string(s->name) : "null") + ",\n";
  j += "  \"description\": " + (s ? json_string(s->description) : "null") + ",\n";
  j += "  \"createTime\": " + (s ? json_string(s->create_time) : "null") + ",\n";
  j += std::string("  \"quiesced\": ") + (s ? (s->quiesced ? "true" : "false") : "null") + ",\n";
  j += "  \"vm\": {\"moref\": " + json_string(e.vm_moref) +
       ", \"name\": " + json_string(e.vm_name) + "},\n";
  j += "  \"disks\": [";
  for (size_t i = 0; i < e.disks.size(); ++i) {
    const DiskEntry& d = e.disks[i];
    j += i ? ",\n" : "\n";
    j += "    {\"file\": " + json_string(d.file) + ", \"label\": " + json_string(d.label) +
         ", \"datastorePath\": " + json_string(d.datastore_path) +
         ", \"capacityBytes\": " + std::to_string(d.capacity) +
         ", \"transport\": " + (d.transport.empty() ? "null" : json_string(d.transport)) + "}";
  }
  j += e.disks.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return j;
}

std::string ServerTree::current_write_policy(const std::string& vm) {
  std::lock_guard lock(mu_);
  auto it = power_.find(vm);
  const std::string state = it == power_.end() || it->second.empty() ? "unknown" : it->second;
  if (state == "poweredOff") return "";
  return "the VM's power state is " + state + " (only a powered-off VM's disks are written)";
}

vix::Result<vix::Connection*> ServerTree::connection(const std::string& vm,
                                                     const std::string& snapshot) {
  std::lock_guard lock(mu_);
  auto key = std::make_pair(vm, snapshot);
  if (auto it = connections_.find(key); it != connections_.end()) return it->second.get();
  vix::ConnectSpec spec;
  spec.server = address_.host;
  spec.port = address_.port;
  spec.thumbprint = options_.thumbprint;
  spec.cred_type = VIXDISKLIB_CRED_UID;
  spec.user = options_.user;
  spec.password = options_.password;
  spec.vmx_spec = "moref=" + vm;
  spec.config_scope = options_.config_scope;
  // Read-write only for what may be written: a powered-off VM's live disks.
  auto power = power_.find(vm);
  const bool read_write = options_.read_write && snapshot.empty() && power != power_.end() &&
                          power->second == "poweredOff";
  auto conn = vix::Connection::connect(spec, !read_write, snapshot, options_.transports);
  const std::string what = folder_ + "/" + vm + "/" + (snapshot.empty() ? "current" : snapshot);
  if (!conn.ok()) {
    vix::log::error(what + ": connect failed: " + vix::error_text(conn.error().code) + " (" +
                    conn.error().message + ")");
    return std::move(conn).error();
  }
  vix::log::info(what + (read_write ? ": connected read-write" : ": connected"));
  vix::Connection* raw = conn->get();
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
  std::map<std::pair<std::string, std::string>, std::unique_ptr<vix::Connection>> conns;
  {
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
  run_cleanup(folder_, cleanup_spec(address_, options_));
  if (client_) {
    if (auto r = client_->logout(); !r.ok()) {
      vix::log::error(folder_ + ": logout: " + r.error().message);
    } else {
      vix::log::info(folder_ + ": logged out");
    }
    client_.reset();
  }
}

}  // namespace vixfs
