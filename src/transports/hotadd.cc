#include "transports/hotadd.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "common/log.h"
#include "transports/config_keys.h"
#include "transports/device_node.h"
#include "transports/hotadd_journal.h"
#include "transports/transport.h"
#include "vsphere/client.h"
#include "vsphere/inventory.h"
#include "vsphere/session.h"

namespace vix {
namespace hotadd {

namespace {

namespace vs = vsphere;

constexpr TextKey kProxyVm{"vixfs.hotadd.proxyVm", "", "the moRef of the proxy VM (this host)",
                           default_varies("the VM whose BIOS uuid is this host's")};
constexpr TextKey kDevRoot{"vixfs.hotadd.devRoot", "/dev/disk/by-id",
                           "where an attached disk appears as scsi-3<uuid>"};
constexpr TextKey kProductUuidFile{"vixfs.hotadd.productUuidFile", "/sys/class/dmi/id/product_uuid",
                                   "where this host's BIOS uuid is read"};
constexpr IntKey kAttachTimeout{"vixfs.hotadd.attachTimeoutMs", 0, 3600000, 60000,
                                "how long Open waits for an attached disk's device (ms)"};
// SCSI targets 0..15 on every controller type vSphere offers (pvscsi can do more, but 15 is what
// all of them take); the controller's own unit (7) is skipped.
constexpr int32_t kScsiUnits = 16;

// 32 lower-case hex digits, or "" when `uuid` is not a uuid.
std::string uuid_hex(std::string_view uuid) {
  std::string hex;
  for (char c : uuid) {
    if (c == '-' || c == ' ') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return {};
    hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return hex.size() == 32 ? hex : std::string();
}

// The per-proxy lock of this process: choosing a free unit and attaching must not interleave.
std::mutex& proxy_lock(const std::string& server, const std::string& proxy) {
  static std::mutex registry_mu;
  static std::map<std::string, std::unique_ptr<std::mutex>> registry;
  std::lock_guard lock(registry_mu);
  auto& m = registry[server + "\n" + proxy];
  if (!m) m = std::make_unique<std::mutex>();
  return *m;
}

// The disk an entry stands for among the proxy's devices: same file, and the key the attach got
// (or, when the process died before reading it back, the unit it asked for).
const vs::VmDevice* find_attached(const std::vector<vs::VmDevice>& devices, const JournalEntry& e) {
  for (const vs::VmDevice& d : devices) {
    if (!d.is_disk() || d.file_name != e.file) continue;
    if (e.device_key != 0 ? d.key == e.device_key
                          : (d.controller_key == e.controller_key && d.unit == e.unit)) {
      return &d;
    }
  }
  return nullptr;
}

// Detaches the entry's disk if the proxy still has it; nothing attached is success.
Result<bool> detach_entry(vs::Client& client, const JournalEntry& e) {
  VIX_ASSIGN_OR_RETURN(std::vector<vs::VmDevice> devices, client.devices_of(e.proxy));
  const vs::VmDevice* d = find_attached(devices, e);
  if (d == nullptr) return false;
  VIX_TRY(client.detach_disk(e.proxy, *d));
  return true;
}

// After a failed or finished attach: detach, then drop the entry; if the detach fails the entry
// is handed to Cleanup (owner pid 0), never silently forgotten.
void undo(vs::Client& client, Journal& journal, const JournalEntry& e) {
  std::lock_guard lock(proxy_lock(e.server, e.proxy));
  auto r = detach_entry(client, e);
  if (!r.ok()) {
    log::warn("hotadd: detach of " + e.file + " from " + e.proxy + " failed (" + r.error().message +
              "); left in the journal " + journal.path() + " for Cleanup");
    if (auto a = journal.abandon(e.id); !a.ok()) log::warn("hotadd: " + a.error().message);
    return;
  }
  if (*r) log::info("hotadd: " + e.file + " detached from " + e.proxy);
  if (auto rm = journal.remove(e.id); !rm.ok()) log::warn("hotadd: " + rm.error().message);
}

struct Settings {
  std::string proxy_vm;
  std::string dev_root;
  std::string product_uuid_file;
  int64_t attach_timeout_ms = kAttachTimeout.int_default;
};

Result<Settings> read_settings(const Config& config) {
  Settings s;
  s.proxy_vm = config.get(kProxyVm);
  s.dev_root = config.get(kDevRoot);
  s.product_uuid_file = config.get(kProductUuidFile);
  VIX_ASSIGN_OR_RETURN(s.attach_timeout_ms, config.get(kAttachTimeout));
  if (s.dev_root.empty()) return fail(VIX_E_INVALID_ARG, "vixfs.hotadd.devRoot is empty");
  return s;
}

// The proxy VM: the configured one, else the VM whose BIOS uuid is this machine's.
Result<std::string> find_proxy(const Settings& s, const vs::Inventory& inv,
                               const std::string& server) {
  if (!s.proxy_vm.empty()) {
    if (inv.find_vm(s.proxy_vm) == nullptr) {
      return fail(VIX_E_OBJECT_NOT_FOUND,
                  "hotadd: vixfs.hotadd.proxyVm = " + s.proxy_vm + ": no such VM on " + server);
    }
    return s.proxy_vm;
  }
  std::ifstream in(s.product_uuid_file);
  std::string product;
  if (!in || !std::getline(in, product) || uuid_hex(product).empty()) {
    return fail(VIX_E_NOT_SUPPORTED,
                "hotadd: this host's BIOS uuid is unknown (" + s.product_uuid_file +
                    " unreadable or not a uuid) and vixfs.hotadd.proxyVm is not set");
  }
  for (const vs::VirtualMachine& vm : inv.vms) {
    if (bios_uuid_matches(product, vm.uuid)) return vm.moref;
  }
  return fail(VIX_E_NOT_SUPPORTED, "hotadd: this host (BIOS uuid " + product + ") is not a VM of " +
                                       server + "; set vixfs.hotadd.proxyVm to name the proxy VM");
}

// A free unit on one of the proxy's SCSI controllers (lowest bus first).
Result<std::pair<int32_t, int32_t>> free_scsi_slot(const std::vector<vs::VmDevice>& devices,
                                                   const std::string& proxy) {
  std::vector<const vs::VmDevice*> controllers;
  for (const vs::VmDevice& d : devices)
    if (d.is_scsi_controller()) controllers.push_back(&d);
  if (controllers.empty()) {
    return fail(VIX_E_NOT_SUPPORTED, "hotadd: proxy VM " + proxy + " has no SCSI controller");
  }
  std::sort(controllers.begin(), controllers.end(),
            [](const vs::VmDevice* a, const vs::VmDevice* b) { return a->bus < b->bus; });
  for (const vs::VmDevice* c : controllers) {
    std::set<int32_t> used;
    used.insert(c->scsi_ctlr_unit >= 0 ? c->scsi_ctlr_unit : 7);
    for (const vs::VmDevice& d : devices)
      if (d.controller_key == c->key) used.insert(d.unit);
    for (int32_t u = 0; u < kScsiUnits; ++u)
      if (!used.count(u)) return std::make_pair(c->key, u);
  }
  return fail(VIX_E_OBJECT_IS_BUSY,
              "hotadd: every unit of proxy VM " + proxy + "'s SCSI controllers is in use");
}

// What one open attached: detached again when the device closes.
class HotaddDevice final : public BlockDeviceWrapper {
 public:
  HotaddDevice(std::unique_ptr<BlockDevice> node, std::function<void()> detach)
      : BlockDeviceWrapper(std::move(node)), detach_(std::move(detach)) {}
  ~HotaddDevice() override {
    inner_.reset();  // the device node is closed before the disk leaves the proxy
    if (detach_) detach_();
  }

 private:
  std::function<void()> detach_;
};

// Picks a free unit, journals the attach, attaches and reads the device back, all under the
// proxy's lock. Returns the uuid the server reports for the attached disk ("" if none); sets
// *journalled once the entry is written, so the caller knows there is something to undo.
Result<std::string> attach(vs::Client& client, Journal& journal, bool read_only,
                           JournalEntry* entry, bool* journalled) {
  std::lock_guard lock(proxy_lock(entry->server, entry->proxy));
  VIX_ASSIGN_OR_RETURN(std::vector<vs::VmDevice> devices, client.devices_of(entry->proxy));
  for (const vs::VmDevice& d : devices) {
    if (d.is_disk() && d.file_name == entry->file) {
      return fail(VIX_E_OBJECT_IS_BUSY, "hotadd: " + entry->file +
                                            " is already attached to proxy VM " + entry->proxy +
                                            " (device " + std::to_string(d.key) + ")");
    }
  }
  // The unit is chosen and journalled under the journal's lock, and units that other processes
  // have journalled but not yet attached count as taken: two processes on one proxy never ask
  // for the same unit.
  VIX_TRY(journal.transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    std::vector<vs::VmDevice> taken = devices;
    for (const JournalEntry& e : all) {
      if (e.server != entry->server || e.proxy != entry->proxy) continue;
      vs::VmDevice pending;
      pending.type = "VirtualDisk";
      pending.controller_key = e.controller_key;
      pending.unit = e.unit;
      taken.push_back(pending);
    }
    VIX_ASSIGN_OR_RETURN(auto slot, free_scsi_slot(taken, entry->proxy));
    entry->controller_key = slot.first;
    entry->unit = slot.second;
    all.push_back(*entry);
    return true;
  }));
  *journalled = true;
  vs::DiskAttachSpec spec;
  spec.file_name = entry->file;
  spec.disk_mode = read_only ? "independent_nonpersistent" : "independent_persistent";
  spec.controller_key = entry->controller_key;
  spec.unit = entry->unit;
  VIX_TRY(client.attach_disk(entry->proxy, spec));
  VIX_ASSIGN_OR_RETURN(std::vector<vs::VmDevice> after, client.devices_of(entry->proxy));
  const vs::VmDevice* dev = find_attached(after, *entry);
  if (dev == nullptr) {
    return fail(VIX_E_FAIL, "hotadd: the attach of " + entry->file + " to " + entry->proxy +
                                " succeeded but the proxy does not list the disk");
  }
  entry->device_key = dev->key;
  VIX_TRY(journal.set_device_key(entry->id, entry->device_key));
  return dev->uuid;
}

class HotaddTransport final : public Transport {
 public:
  std::string_view name() const override { return "hotadd"; }
  Result<std::unique_ptr<BlockDevice>> open(const TransportContext& ctx, const std::string& path,
                                            uint32_t flags) override;
};

Result<std::unique_ptr<BlockDevice>> HotaddTransport::open(const TransportContext& ctx,
                                                           const std::string& path,
                                                           uint32_t flags) {
  // Everything that can refuse without a SOAP call comes first: the chain tries hotadd before
  // the network modes on every remote open.
  if (ctx.remote == nullptr) {
    return fail(VIX_E_NOT_SUPPORTED, "hotadd: a local connection has no proxy VM to attach to");
  }
  RemoteSession& remote = *ctx.remote;
  const vs::Inventory& inv = remote.inventory();
  const std::string server = remote.endpoint();
  const vs::VirtualMachine* vm = inv.find_vm(remote.vm());
  if (vm == nullptr) {
    return fail(
        VIX_E_NOT_SUPPORTED,
        "hotadd: the connection names no VM (vmxSpec \"moref=vm-NN\") whose disk to attach");
  }
  VIX_ASSIGN_OR_RETURN(Settings settings, read_settings(ctx.config));
  VIX_ASSIGN_OR_RETURN(std::string proxy, find_proxy(settings, inv, server));
  if (proxy == vm->moref) {
    return fail(VIX_E_NOT_SUPPORTED, "hotadd: the proxy VM " + proxy +
                                         " is the VM being read; its disks cannot be hot-added "
                                         "to itself");
  }
  const std::vector<vs::VirtualDisk>* disks = &vm->disks;
  if (!ctx.snapshot.empty()) {
    const vs::Snapshot* snap = vs::find_snapshot(vm->snapshots, ctx.snapshot);
    if (snap == nullptr) {
      return fail(VIX_E_OBJECT_NOT_FOUND, "hotadd: snapshot " + ctx.snapshot + " of " + vm->moref +
                                              " not in the inventory");
    }
    disks = &snap->disks;
  }
  const vs::VirtualDisk* disk = nullptr;
  for (const vs::VirtualDisk& d : *disks)
    if (d.file_name() == path) disk = &d;
  if (disk == nullptr) {
    return fail(VIX_E_OBJECT_NOT_FOUND,
                "hotadd: " + path + " is not a disk of " + vm->moref +
                    (ctx.snapshot.empty() ? std::string() : " snapshot " + ctx.snapshot));
  }
  const std::string uuid = disk->chain.empty() ? std::string() : disk->chain[0].uuid;
  if (scsi_link_name(uuid).empty()) {
    return fail(
        VIX_E_NOT_SUPPORTED,
        "hotadd: " + path + " has no backing uuid" +
            (uuid.empty() ? std::string() : " (\"" + uuid.substr(0, 64) + "\" is not one)") +
            ", so its device on the proxy cannot be identified");
  }
  if (!ctx.read_only && !ctx.snapshot.empty()) {
    return fail(VIX_E_NOT_SUPPORTED,
                "hotadd: snapshot disks are attached read-only; this open asks for write access");
  }

  Journal journal(journal_dir(ctx.config));
  JournalEntry entry;
  entry.id = new_entry_id();
  entry.server = server_key(ctx.spec.server, ctx.spec.port);
  entry.proxy = proxy;
  entry.file = path;
  entry.owner = self_process();
  vs::Client& client = remote.client();
  bool journalled = false;
  auto attached = attach(client, journal, ctx.read_only, &entry, &journalled);
  if (!attached.ok()) {
    if (journalled) undo(client, journal, entry);
    return std::move(attached).error();
  }
  // vSphere reports the attached disk's own uuid; the simulator reports none.
  const std::string device_uuid = scsi_link_name(*attached).empty() ? uuid : *attached;
  log::info("hotadd: " + path + " attached to proxy VM " + proxy + " (device " +
            std::to_string(entry.device_key) + ", controller " +
            std::to_string(entry.controller_key) + " unit " + std::to_string(entry.unit) + ")");

  // The guest side: udev (or the test's helper) makes the by-id link once the kernel sees the disk.
  const std::string link = settings.dev_root + "/" + scsi_link_name(device_uuid);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(settings.attach_timeout_ms);
  std::error_code ec;
  while (!std::filesystem::exists(link, ec)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      undo(client, journal, entry);
      return fail(VIX_E_OBJECT_NOT_FOUND,
                  "hotadd: " + path + " was attached to proxy VM " + proxy + " but " + link +
                      " did not appear within vixfs.hotadd.attachTimeoutMs = " +
                      std::to_string(settings.attach_timeout_ms) + " ms; detached again");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  DeviceNodeOptions options;
  options.read_only = ctx.read_only;
  options.unbuffered = (flags & VIXDISKLIB_FLAG_OPEN_UNBUFFERED) != 0;
  options.expected_capacity_bytes = disk->capacity_bytes;
  options.transport_name = "hotadd";
  auto node = open_device_node(link, options);
  if (!node.ok()) {
    undo(client, journal, entry);
    return fail(node.error().code, "hotadd: " + node.error().message);
  }
  return attached_device(std::move(node).value(), [remote = &remote, dir = journal_dir(ctx.config),
                                                   entry = std::move(entry)] {
    Journal journal(dir);
    undo(remote->client(), journal, entry);
  });
}

}  // namespace

std::unique_ptr<BlockDevice> attached_device(std::unique_ptr<BlockDevice> node,
                                             std::function<void()> detach) {
  return std::make_unique<HotaddDevice>(std::move(node), std::move(detach));
}

std::string scsi_link_name(std::string_view uuid) {
  std::string hex = uuid_hex(uuid);
  return hex.empty() ? std::string() : "scsi-3" + hex;
}

bool bios_uuid_matches(std::string_view product_uuid, std::string_view vm_uuid) {
  const std::string a = uuid_hex(product_uuid), b = uuid_hex(vm_uuid);
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  // Byte-swap the first three fields (4, 2 and 2 bytes) of a.
  std::string s = a;
  auto swap_bytes = [&](size_t off, size_t len) {
    for (size_t i = 0; i < len / 2; ++i) {
      std::swap(s[off + 2 * i], s[off + 2 * (len - 1 - i)]);
      std::swap(s[off + 2 * i + 1], s[off + 2 * (len - 1 - i) + 1]);
    }
  };
  swap_bytes(0, 4);
  swap_bytes(8, 2);
  swap_bytes(12, 2);
  return s == b;
}

Result<CleanupResult> cleanup(const ConnectSpec& spec, const Config& config) {
  CleanupResult result;
  if (spec.is_local()) return result;
  Journal journal(journal_dir(config));
  // No journal, nothing ever attached from here: not even a lock file is made.
  std::error_code ec;
  if (!std::filesystem::exists(journal.path(), ec)) return result;
  const std::string key = server_key(spec.server, spec.port);
  const ProcessId self = self_process();
  // Orphans are claimed (owner := this process) under the lock, so a concurrent Cleanup in
  // another process leaves them alone while the slow SOAP calls run unlocked.
  std::vector<JournalEntry> claimed;
  uint32_t live = 0;
  VIX_TRY(journal.transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    for (JournalEntry& e : all) {
      if (e.server != key) continue;
      if (process_alive(e.owner)) {
        ++live;
        continue;
      }
      claimed.push_back(e);
      e.owner = self;
    }
    return !claimed.empty();
  }));
  result.remaining = live;
  if (claimed.empty()) return result;

  // Gives claimed entries back to their dead owners, for the next Cleanup to retry.
  auto release = [&](const std::vector<JournalEntry>& entries) {
    auto r = journal.transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
      for (JournalEntry& e : all)
        for (const JournalEntry& c : entries)
          if (e.id == c.id) e.owner = c.owner;
      return true;
    });
    if (!r.ok()) log::warn("Cleanup: " + r.error().message);
  };

  ConnectSpec unbound = spec;
  unbound.vmx_spec.clear();
  auto session = RemoteSession::open(unbound, "", config);
  if (!session.ok()) {
    release(claimed);
    return fail(session.error().code, "Cleanup: " + std::to_string(claimed.size()) +
                                          " hot-added disk(s) of dead processes to detach from " +
                                          key + ", but: " + session.error().message);
  }
  vs::Client& client = (*session)->client();
  for (const JournalEntry& e : claimed) {
    std::lock_guard lock(proxy_lock(e.server, e.proxy));
    auto r = detach_entry(client, e);
    if (!r.ok()) {
      log::warn("Cleanup: detach of " + e.file + " from proxy VM " + e.proxy +
                " failed: " + r.error().message);
      release({e});
      ++result.remaining;
      continue;
    }
    log::info("Cleanup: " + e.file + (*r ? " detached from" : " no longer attached to") +
              " proxy VM " + e.proxy + " (left by process " + std::to_string(e.owner.pid) + ")");
    if (auto rm = journal.remove(e.id); !rm.ok()) {
      log::warn("Cleanup: " + rm.error().message);
      ++result.remaining;
      continue;
    }
    ++result.cleaned_up;
  }
  return result;
}

}  // namespace hotadd

KeyList hotadd_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&hotadd::kProxyVm, &hotadd::kDevRoot,
                                               &hotadd::kProductUuidFile, &hotadd::kAttachTimeout};
  return kKeys;
}

std::unique_ptr<Transport> make_hotadd_transport() {
  return std::make_unique<hotadd::HotaddTransport>();
}

}  // namespace vix
