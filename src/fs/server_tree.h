// The remote tree of vixfs --server: one vCenter's inventory as folders
// <server>/<vm moRef>/<snapshot moRef | current>/{<slot>.img, snapshot.json} plus
// <server>/by-name/<vm name>/<snapshot name> symlinks. The inventory is read at mount and again
// when a lookup or listing comes after vixfs.inventory.ttlSeconds (default 30; 0: never): new
// VMs and snapshots appear, removed ones leave their folders (open files keep working).
// Disks connect lazily: one library connection per (VM, snapshot), shared by its disks and kept
// until shutdown(). On a rw mount, a VM's current/ connection is read-write when the VM was
// powered off as it was made; its disks take writes while the inventory still shows it off.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/result.h"
#include "fs/tree.h"
#include "vix/connection.h"
#include "vsphere/client.h"
#include "vsphere/inventory.h"
#include "vsphere/privileges.h"
#include "vsphere/session.h"

namespace vixfs {

struct ServerOptions {
  std::string url;  // https://HOST[:PORT][/sdk]
  std::string user, password, thumbprint;
  std::string alias;         // folder name; "" means the URL's host
  std::string transports;    // colon-separated; "" for the library default
  std::string config_scope;  // vixfs.server.<scope>.nbd.* / .datastore.* apply (Config::scoped)
  // -o rw: current/ disks of a VM the inventory shows powered off are opened on a read-write
  // connection and take writes; snapshot disks and other VMs' disks stay read-only.
  bool read_write = false;
  // With read_write: snapshot disks take writes into redo logs under this folder
  // (<redo_dir>/<server folder>/<vm>/<snapshot>/<disk>.redo.vmdk); "" leaves them read-only.
  std::string redo_dir;
  bool keep_redo = false;  // the logs outlive the mount (-o keep-redo=DIR)
  // Snapshots made from the tree (mkdir <vm>/@NAME) quiesce the guest through VMware Tools when
  // asked: kTry (-o quiesce) falls back to a crash-consistent snapshot with a warning when
  // quiescing fails, kRequire (-o quiesce=require) fails the mkdir then.
  enum class Quiesce { kNo, kTry, kRequire };
  Quiesce quiesce = Quiesce::kNo;
  // -o allow-remove-snapshots: rmdir removes any snapshot, not only those vixfs made.
  bool allow_remove_snapshots = false;
};

// https://HOST[:PORT][/PATH] -> host and port (443 when absent); an error names what is wrong.
struct ServerAddress {
  std::string host;
  uint32_t port = 443;
};
vix::Result<ServerAddress> parse_server_url(const std::string& url);

// '/' in a vSphere name becomes %2F (and '%' %25, so the mapping can be undone).
std::string escape_name(const std::string& name);
using vix::json_string;

class ServerTree {
 public:
  // Logs in (failing on a wrong password, thumbprint or an unreachable server), reads the
  // inventory and adds the server's folder under the tree's root.
  static vix::Result<std::unique_ptr<ServerTree>> mount(const ServerOptions& options, Tree* tree);
  ~ServerTree();

  // Re-reads the inventory in the background when the TTL has passed and waits for it until 2 s
  // after it started; past that (a slow or silent server) every caller is served the current
  // view at once. A failure is logged and the old tree kept until the next TTL.
  void maybe_refresh();

  // Called by a refresh that changed the tree, before the lookups waiting for it go on, with
  // the changes: the daemon tells the kernel to forget those entries and listings.
  void set_invalidate(std::function<void(std::vector<Tree::Change>)> fn) {
    invalidate_ = std::move(fn);
  }

  // Unmount, after every disk is closed: Disconnect each library connection, log out.
  void shutdown();
  const std::string& folder() const { return folder_; }
  // mkdir and rmdir in a VM folder (server_tree_snapshots.cc). mkdir @NAME makes a snapshot NAME
  // of the VM and returns once its folder @NAME is there; rmdir of a snapshot's folder (its
  // moRef or @NAME) removes the snapshot. 0, an errno (the log says why), or kNotMine when
  // `parent` is not one of this server's VM folders.
  static constexpr int kNotMine = -1;
  int make_snapshot(fuse_ino_t parent, const std::string& name);
  int remove_snapshot(fuse_ino_t parent, const std::string& name);
  // vixfs.inventory.ttlSeconds (0: read once).
  std::chrono::seconds ttl() const { return ttl_; }

 private:
  struct DiskEntry {
    std::string file, label, datastore_path;
    uint64_t capacity = 0;
    uint64_t stored_bytes = 0;  // layoutEx: what its files take on the datastore (0: unknown)
    std::string change_id;      // backing.changeId at that point ("": CBT was off)
    std::string transport;      // "" until opened
    fuse_ino_t ino = 0;
  };
  struct SnapshotEntry {
    std::string vm_moref, vm_name;
    bool current = true;
    vix::vsphere::Snapshot snapshot;  // without children and disks; unused for current/
    std::vector<DiskEntry> disks;
    fuse_ino_t json = 0;
  };

  ServerTree() = default;
  // Adds what `inventory_` has and the tree lacks, and unlinks what it no longer has.
  void apply_inventory();
  void refresh();  // the background half of maybe_refresh
  void update_by_name();
  // Whether the VM's live disks (paths, labels) differ from what current/ shows.
  bool live_disks_changed(const vix::vsphere::VirtualMachine& vm);
  // st_blocks of the VM's disk files (live and snapshots') from the inventory's layoutEx.
  void update_stored_blocks(const vix::vsphere::VirtualMachine& vm);
  void add_snapshot(fuse_ino_t vm_dir, const vix::vsphere::VirtualMachine& vm,
                    const vix::vsphere::Snapshot* snap,
                    const std::vector<vix::vsphere::VirtualDisk>& disks);
  std::string render_json(const SnapshotEntry& e) const;
  // @NAME folders of the snapshots vixfs made, beside their moRef folders (same files).
  void update_at_names();
  // The VM moRef of a VM folder, "" for any other folder.
  std::string vm_of_folder(fuse_ino_t dir);
  // Reads the inventory now and applies it (after a mkdir or rmdir changed it).
  vix::Result<void> reload_inventory();
  // Unmount: the snapshots this mount made and did not remove go, as their description says.
  void remove_own_snapshots();
  // RemoveSnapshot_Task with what must come before (EndAccess) and after (the connection
  // dropped, consolidationNeeded checked); false when the removal failed (logged).
  vix::Result<void> drop_snapshot(const std::string& vm, const std::string& snapshot);
  void set_consolidation_needed(const std::string& vm, bool needed);
  // One HasPrivilegeOnEntities for every VM of inventory_ (at mount and after each refresh);
  // snapshot.json shows the result.
  void check_privileges();
  // The refusal of `operation` on `vm` by the privilege table (logged with `where` unless ""),
  // or ok.
  vix::Result<void> privilege_check(const std::string& operation, const std::string& vm,
                                    const std::string& where);
  // The invalidations of a mkdir's or rmdir's inventory change, sent by a thread of their own.
  void deliver_invalidations();
  void stop_invalidations();
  vix::Result<vix::Connection*> connection(const std::string& vm, const std::string& snapshot);
  // What a connection to `vm` ("" for none) is made with: the server, and the mount's session.
  vix::ConnectSpec spec_for(const std::string& vm) const;
  // The write policy of a current/ disk of `vm` ("" when writable, else why not).
  std::string current_write_policy(const std::string& vm);

  ServerOptions options_;
  ServerAddress address_;
  Tree* tree_ = nullptr;
  std::string folder_;
  std::shared_ptr<vix::ServerSession> session_;  // the mount's one login to the server
  vix::vsphere::Inventory inventory_;
  timespec mounted_at_{};
  fuse_ino_t server_dir_ = 0, by_name_ = 0;
  std::map<std::string, fuse_ino_t> vm_dirs_;                            // vm moRef -> folder
  std::map<std::pair<std::string, std::string>, fuse_ino_t> snap_dirs_;  // (vm, snapshot)
  std::map<std::pair<std::string, std::string>, std::string> at_names_;  // -> "@NAME"
  // mkdir and rmdir one at a time; guards own_snapshots_.
  std::mutex snapshot_mu_;
  std::set<std::pair<std::string, std::string>> own_snapshots_;  // (vm, snapshot) this mount made
  std::mutex invalidation_mu_;                                   // guards the fields below
  std::condition_variable invalidation_cv_;
  std::vector<Tree::Change> pending_invalidations_;
  bool invalidations_stop_ = false;
  std::thread invalidator_;
  std::chrono::seconds ttl_{30};
  std::mutex refresh_mu_;  // held while applying an inventory; guards inventory_ and the maps above
  std::mutex state_mu_;    // guards the fields below
  std::condition_variable state_cv_;
  std::chrono::steady_clock::time_point loaded_at_;
  std::chrono::steady_clock::time_point refresh_started_;  // of the last (or running) refresh
  bool refreshing_ = false, stopping_ = false;
  std::thread refresher_;  // reads the inventory in the background (maybe_refresh)
  std::function<void(std::vector<Tree::Change>)> invalidate_;
  static constexpr std::chrono::seconds kRefreshWait{2};
  std::mutex connect_mu_;  // held while a connection is made (never while mu_ is held)
  std::mutex mu_;          // guards the fields below
  std::vector<std::unique_ptr<SnapshotEntry>> snapshots_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<vix::Connection>> connections_;
  std::map<std::string, std::string> power_;     // vm moRef -> runtime.powerState of the inventory
  std::map<std::string, bool> change_tracking_;  // vm moRef -> config.changeTrackingEnabled
  // vm moRef -> runtime.consolidationNeeded as read after a snapshot removal (absent: not read).
  std::map<std::string, bool> consolidation_needed_;
  vix::vsphere::PrivilegeTable privileges_;  // unknown until check_privileges() ran
};

}  // namespace vixfs
