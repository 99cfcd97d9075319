// The server tree's inventory: read at mount and again after vixfs.inventory.ttlSeconds, in the
// background, and applied to the tree (new VMs and snapshots appear, removed ones leave).
#include <cstdio>
#include <set>

#include "common/log.h"
#include "fs/disk_file.h"
#include "fs/server_tree.h"
#include "vix/errors.h"

namespace vixfs {
namespace {

namespace vs = vix::vsphere;

timespec from_ns(int64_t ns) {
  timespec t{};
  if (ns > 0) {
    t.tv_sec = static_cast<time_t>(ns / 1000000000);
    t.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  return t;
}

// 512-byte blocks holding `bytes`.
uint64_t stored_blocks(uint64_t bytes) {
  return bytes / 512 + (bytes % 512 != 0);
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

void ServerTree::maybe_refresh() {
  if (ttl_.count() == 0) return;
  std::unique_lock lock(state_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (!refreshing_ && !stopping_ && now - loaded_at_ >= ttl_) {
    refreshing_ = true;
    refresh_started_ = now;
    if (refresher_.joinable()) refresher_.join();  // finished: refreshing_ was false
    refresher_ = std::thread([this] { refresh(); });
  }
  // A slow or silent server costs the listings this long at most, counted from the refresh's
  // start, not per lookup (an ls -l of a folder is a lookup per entry); the old view is served
  // after, until the refresh ends (at most vixfs.soap.timeoutMs) and the next TTL.
  state_cv_.wait_until(lock, refresh_started_ + kRefreshWait, [this] { return !refreshing_; });
}

void ServerTree::refresh() {
  auto inv =
      session_
          ? session_->refresh_inventory()
          : vix::Result<std::shared_ptr<const vs::Inventory>>(vix::fail(VIX_E_FAIL, "logged out"));
  if (!inv.ok()) {
    vix::log::error(folder_ + ": inventory refresh failed, keeping the old tree: " +
                    vix::error_text(inv.error().code) + " (" + inv.error().message + ")");
  } else {
    std::lock_guard lock(refresh_mu_);
    inventory_ = **inv;
    apply_inventory();
    check_privileges();  // renders every snapshot.json anew, with what apply_inventory learned
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
      change_tracking_[vm.moref] = vm.cbt_enabled;
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
    } else {
      update_stored_blocks(vm);
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
  update_at_names();
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

void ServerTree::update_stored_blocks(const vs::VirtualMachine& vm) {
  std::vector<std::pair<fuse_ino_t, uint64_t>> updates;
  {
    std::lock_guard lock(mu_);
    for (const auto& entry : snapshots_) {
      if (entry->vm_moref != vm.moref) continue;
      const std::vector<vs::VirtualDisk>* disks = &vm.disks;
      if (!entry->current) {
        const vs::Snapshot* s = vs::find_snapshot(vm.snapshots, entry->snapshot.moref);
        if (s == nullptr) continue;
        disks = &s->disks;
      }
      for (DiskEntry& de : entry->disks) {
        for (const vs::VirtualDisk& d : *disks) {
          if (d.file_name() != de.datastore_path || d.stored_bytes == de.stored_bytes) continue;
          de.stored_bytes = d.stored_bytes;
          updates.emplace_back(de.ino, stored_blocks(d.stored_bytes));
        }
      }
    }
  }
  for (const auto& [ino, blocks] : updates) tree_->set_stored_blocks(ino, blocks);
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
    e->disks.push_back(
        {file, d.label, d.file_name(), d.capacity_bytes, d.stored_bytes, d.change_id, "", 0});
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
    e->disks[i].ino =
        tree_->add_disk(dir, de.file, std::move(file), mtime, stored_blocks(de.stored_bytes));
  }
  std::string json;
  {
    std::lock_guard lock(mu_);
    json = render_json(*e);
  }
  e->json = tree_->add_text(dir, "snapshot.json", std::move(json));
  std::lock_guard lock(mu_);
  snapshots_.push_back(std::move(entry));
}

}  // namespace vixfs
