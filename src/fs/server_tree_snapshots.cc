// Snapshots made and removed from the tree: mkdir <vm>/@NAME, rmdir <vm>/<snapshot folder>.
// A snapshot vixfs makes carries a description naming vixfs, this host and this process
// (vix/leftovers.h), shows as @NAME beside its moRef folder, blocks Storage vMotion of its VM
// while it exists (PrepareForAccess), and lives as long as the mount: rmdir or unmount removes
// it, and a killed vixfs leaves it to the next mount's Cleanup or `vixdisk cleanup`.
#include <cerrno>
#include <ctime>

#include "common/log.h"
#include "fs/disk_file.h"
#include "fs/server_tree.h"
#include "vix/errors.h"
#include "vix/leftovers.h"

namespace vixfs {
namespace {

namespace vs = vix::vsphere;

constexpr const char* kTool = "vixfs";

// vSphere's refusal of a privilege is the user's EACCES; anything else went wrong on the way.
int errno_of(const vix::Error& e) {
  return e.code == VIX_E_AUTHENTICATION_FAIL ? EACCES : EIO;
}

std::string describe(const vix::Error& e) {
  return vix::error_text(e.code) + " (" + e.message + ")";
}

bool made_by_vixfs(const std::string& description) {
  auto maker = vix::parse_snapshot_description(description);
  return maker && maker->tool == kTool;
}

}  // namespace

std::string ServerTree::vm_of_folder(fuse_ino_t dir) {
  std::lock_guard lock(refresh_mu_);
  for (const auto& [vm, ino] : vm_dirs_) {
    if (ino == dir) return vm;
  }
  return "";
}

void ServerTree::update_at_names() {
  std::map<std::pair<std::string, std::string>, std::string> want;
  for (const auto& vm : inventory_.vms) {
    std::set<std::string> taken;
    for (const vs::Snapshot* s : vs::flatten(vm.snapshots)) {
      if (!made_by_vixfs(s->description)) continue;
      std::string name = "@" + escape_name(s->name);
      if (taken.count(name)) name += "~" + s->moref;
      taken.insert(name);
      want[{vm.moref, s->moref}] = name;
    }
  }
  for (auto it = at_names_.begin(); it != at_names_.end();) {
    auto w = want.find(it->first);
    if (w != want.end() && w->second == it->second) {
      ++it;
      continue;
    }
    if (auto vm = vm_dirs_.find(it->first.first); vm != vm_dirs_.end()) {
      tree_->unlink(vm->second, it->second);
    }
    it = at_names_.erase(it);
  }
  for (const auto& [key, name] : want) {
    if (at_names_.count(key)) continue;
    auto vm = vm_dirs_.find(key.first);
    auto snap = snap_dirs_.find(key);
    if (vm == vm_dirs_.end() || snap == snap_dirs_.end()) continue;
    const fuse_ino_t twin = tree_->add_dir(vm->second, name);
    if (twin == 0) continue;  // a snapshot's moRef can never start with '@': a race, next time
    for (const auto& e : tree_->list(snap->second)) tree_->link(twin, e.name, e.ino);
    at_names_[key] = name;
  }
}

vix::Result<void> ServerTree::reload_inventory() {
  if (!session_) return vix::fail(VIX_E_FAIL, folder_ + ": logged out");
  VIX_ASSIGN_OR_RETURN(std::shared_ptr<const vs::Inventory> inv, session_->refresh_inventory());
  {
    std::lock_guard lock(refresh_mu_);
    inventory_ = *inv;
    apply_inventory();
    // Not from this thread: the kernel holds the folder of the mkdir or rmdir locked until it is
    // answered, and an invalidation of an entry in it waits for that lock.
    auto changes = tree_->take_changes();
    if (invalidate_ && !changes.empty()) {
      std::lock_guard q(invalidation_mu_);
      pending_invalidations_.insert(pending_invalidations_.end(), changes.begin(), changes.end());
      if (!invalidator_.joinable()) {
        invalidator_ = std::thread([this] { deliver_invalidations(); });
      }
      invalidation_cv_.notify_one();
    }
  }
  std::lock_guard lock(state_mu_);
  loaded_at_ = std::chrono::steady_clock::now();
  return vix::ok();
}

void ServerTree::deliver_invalidations() {
  std::unique_lock lock(invalidation_mu_);
  for (;;) {
    invalidation_cv_.wait(
        lock, [this] { return invalidations_stop_ || !pending_invalidations_.empty(); });
    if (pending_invalidations_.empty()) return;  // stopping, nothing left
    auto changes = std::exchange(pending_invalidations_, {});
    lock.unlock();
    invalidate_(std::move(changes));
    lock.lock();
  }
}

void ServerTree::stop_invalidations() {
  {
    std::lock_guard lock(invalidation_mu_);
    invalidations_stop_ = true;
    pending_invalidations_.clear();  // the kernel forgets everything at unmount anyway
  }
  invalidation_cv_.notify_all();
  if (invalidator_.joinable()) invalidator_.join();
}

int ServerTree::make_snapshot(fuse_ino_t parent, const std::string& name) {
  const std::string vm = vm_of_folder(parent);
  if (vm.empty()) return kNotMine;
  const std::string where = folder_ + "/" + vm + "/" + name;
  if (name.size() < 2 || name[0] != '@') {
    vix::log::error(where +
                    ": mkdir refused (EPERM): a VM folder makes only snapshots, and their "
                    "folders are named @NAME (mkdir @nightly makes snapshot nightly)");
    return EPERM;
  }
  const std::string snap_name = name.substr(1);
  if (snap_name.find('%') != std::string::npos) {
    // '%' escapes '/' in folder names: a name with one would not come back as the folder asked.
    vix::log::error(where + ": mkdir refused (EINVAL): '%' cannot be in a snapshot name made here");
    return EINVAL;
  }
  std::lock_guard one_at_a_time(snapshot_mu_);
  if (tree_->lookup(parent, name) != 0) return EEXIST;
  if (!privilege_check("snapshot", vm, where + ": mkdir").ok()) return EACCES;
  vs::Client& client = session_->client();
  const vix::Maker me = vix::this_process(kTool);
  const std::string description = vix::snapshot_description(me, vix::utc_now());
  const bool quiesce = options_.quiesce != ServerOptions::Quiesce::kNo;
  auto snap = client.create_snapshot(vm, snap_name, description, false, quiesce);
  if (!snap.ok() && options_.quiesce == ServerOptions::Quiesce::kTry) {
    vix::log::warn(where + ": the quiesced snapshot failed: " + describe(snap.error()) +
                   "; making a crash-consistent one instead (-o quiesce=require fails here)");
    snap = client.create_snapshot(vm, snap_name, description, false, false);
  }
  if (!snap.ok()) {
    vix::log::error(where + ": mkdir failed: snapshot of " + vm + ": " + describe(snap.error()));
    return errno_of(snap.error());
  }
  own_snapshots_.insert({vm, *snap});
  // After the snapshot exists, so that whenever the method is disabled for this process a
  // snapshot naming it exists too: a killed vixfs's Cleanup finds the snapshot and with it
  // what to enable again.
  if (auto p = privilege_check("disable-methods", vm, ""); !p.ok()) {
    vix::log::warn(where + ": Storage vMotion of " + vm + " not blocked: " + p.error().message);
  } else if (auto r = vix::prepare_for_access(spec_for(vm), vix::access_identity(me)); !r.ok()) {
    vix::log::warn(where + ": Storage vMotion of " + vm + " not blocked: " + describe(r.error()));
  }
  if (auto r = reload_inventory(); !r.ok()) {
    vix::log::error(where + ": snapshot " + *snap + " made, but reading the inventory failed: " +
                    describe(r.error()) + " (it is removed at unmount)");
    return EIO;
  }
  if (tree_->lookup(parent, name) == 0) {
    vix::log::error(where + ": snapshot " + *snap + " made, but the inventory does not show it " +
                    "under that name (it is removed at unmount)");
    return EIO;
  }
  vix::log::info(where + ": snapshot " + *snap + " (" + snap_name + ") made" +
                 (quiesce ? " (quiesce asked)" : ""));
  return 0;
}

int ServerTree::remove_snapshot(fuse_ino_t parent, const std::string& name) {
  const std::string vm = vm_of_folder(parent);
  if (vm.empty()) return kNotMine;
  const std::string where = folder_ + "/" + vm + "/" + name;
  std::lock_guard one_at_a_time(snapshot_mu_);
  std::string snapshot;
  {
    std::lock_guard lock(refresh_mu_);
    for (const auto& [key, at] : at_names_) {
      if (key.first == vm && at == name) snapshot = key.second;
    }
    if (snapshot.empty() && snap_dirs_.count({vm, name})) snapshot = name;
  }
  if (snapshot.empty()) {
    if (tree_->lookup(parent, name) == 0) return ENOENT;
    vix::log::error(where + ": rmdir refused (EPERM): not a snapshot's folder");
    return EPERM;
  }
  std::string description;
  {
    std::lock_guard lock(mu_);
    for (const auto& e : snapshots_) {
      if (!e->current && e->vm_moref == vm && e->snapshot.moref == snapshot) {
        description = e->snapshot.description;
      }
    }
  }
  if (!made_by_vixfs(description) && !options_.allow_remove_snapshots) {
    vix::log::error(where + ": rmdir refused (EPERM): snapshot " + snapshot +
                    " was not made by vixfs; mount with -o allow-remove-snapshots to remove any "
                    "snapshot");
    return EPERM;
  }
  if (!privilege_check("remove-snapshot", vm, where + ": rmdir").ok()) return EACCES;
  if (auto r = drop_snapshot(vm, snapshot); !r.ok() && r.error().code == VIX_E_OBJECT_IS_BUSY) {
    vix::log::error(where + ": rmdir refused (EBUSY): " + r.error().message);
    return EBUSY;
  } else if (!r.ok()) {
    vix::log::error(where + ": rmdir failed: removing snapshot " + snapshot + ": " +
                    describe(r.error()));
    return errno_of(r.error());
  }
  vix::log::info(where + ": snapshot " + snapshot + " removed");
  if (auto r = reload_inventory(); !r.ok()) {
    vix::log::error(where + ": reading the inventory after the removal failed: " +
                    describe(r.error()) + "; the folder goes at the next refresh");
  }
  return 0;
}

vix::Result<void> ServerTree::drop_snapshot(const std::string& vm, const std::string& snapshot) {
  // Its files first, atomically against opens: none may be open, and none may open through the
  // connection that goes with the snapshot.
  std::vector<std::shared_ptr<DiskFile>> files;
  {
    std::lock_guard lock(mu_);
    for (const auto& e : snapshots_) {
      if (e->current || e->vm_moref != vm || e->snapshot.moref != snapshot) continue;
      for (const DiskEntry& d : e->disks) {
        Node node;
        if (tree_->get(d.ino, &node) && node.disk) files.push_back(node.disk);
      }
    }
  }
  std::vector<std::shared_ptr<DiskFile>> retired;
  for (const auto& f : files) {
    if (!f->retire("snapshot " + snapshot + " removed")) {
      for (const auto& r : retired) r->unretire();
      return vix::fail(VIX_E_OBJECT_IS_BUSY, f->name() + " is open");
    }
    retired.push_back(f);
  }
  auto unretire = [&retired] {
    for (const auto& r : retired) r->unretire();
  };
  const bool own = own_snapshots_.count({vm, snapshot}) > 0;
  if (own) {
    // Before the removal (see make_snapshot), and only with the VM's last snapshot of ours:
    // the method is disabled once per VM for this process, not per snapshot.
    bool last = true;
    for (const auto& [v, s] : own_snapshots_) last = last && (v != vm || s == snapshot);
    const std::string identity = vix::access_identity(vix::this_process(kTool));
    if (auto p = privilege_check("enable-methods", vm, ""); last && !p.ok()) {
      vix::log::warn(folder_ + "/" + vm + ": EndAccess not tried: " + p.error().message);
    } else if (last) {
      if (auto r = vix::end_access(spec_for(vm), identity); !r.ok()) {
        vix::log::warn(folder_ + "/" + vm + ": EndAccess: " + describe(r.error()));
      }
    }
  }
  if (auto r = session_->client().remove_snapshot(snapshot, false); !r.ok()) {
    unretire();
    return r;
  }
  own_snapshots_.erase({vm, snapshot});
  // No file of the snapshot is open or can open: its connection can go.
  std::unique_ptr<vix::Connection> conn;
  {
    std::lock_guard connecting(connect_mu_);
    std::lock_guard lock(mu_);
    if (auto it = connections_.find({vm, snapshot}); it != connections_.end()) {
      conn = std::move(it->second);
      connections_.erase(it);
    }
  }
  if (conn) {
    if (auto r = conn->disconnect(); !r.ok()) {
      vix::log::warn(folder_ + "/" + vm + "/" + snapshot + ": disconnect: " + r.error().message);
    }
    conn.reset();
  }
  // A removal that could not merge the delta disks leaves the VM running on them.
  auto need = session_->client().needing_consolidation({vm});
  if (!need.ok()) {
    vix::log::warn(folder_ + "/" + vm +
                   ": consolidationNeeded not read: " + describe(need.error()));
  } else {
    const bool needed = !need->empty();
    if (needed) {
      vix::log::warn(folder_ + "/" + vm + ": needs consolidation after the removal of " + snapshot +
                     ": run vixdisk consolidate " + vm + " --server ...");
    }
    set_consolidation_needed(vm, needed);
  }
  return vix::ok();
}

void ServerTree::set_consolidation_needed(const std::string& vm, bool needed) {
  std::vector<std::pair<fuse_ino_t, std::string>> texts;
  {
    std::lock_guard lock(mu_);
    consolidation_needed_[vm] = needed;
    for (const auto& e : snapshots_) {
      if (e->vm_moref == vm) texts.emplace_back(e->json, render_json(*e));
    }
  }
  for (auto& [ino, text] : texts) tree_->set_text(ino, std::move(text));
}

void ServerTree::remove_own_snapshots() {
  std::lock_guard one_at_a_time(snapshot_mu_);
  const auto own = own_snapshots_;
  for (const auto& [vm, snapshot] : own) {
    if (auto r = drop_snapshot(vm, snapshot); !r.ok()) {
      vix::log::error(folder_ + "/" + vm + "/" + snapshot + ": removing the snapshot made here " +
                      "failed: " + describe(r.error()) + " (vixdisk cleanup removes it later)");
    } else {
      vix::log::info(folder_ + "/" + vm + "/" + snapshot + ": snapshot made here removed");
    }
  }
}

}  // namespace vixfs
