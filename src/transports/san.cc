// san: serves the disks whose data is a whole LUN this host sees, i.e. raw device mappings.
// san sits before the network modes in the default chain, so every remote open passes through
// here: everything that does not apply is decided from the inventory already in memory and a
// handful of stat() calls, never a network call or a directory walk.
#include "transports/san.h"

#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "transports/config_keys.h"
#include "transports/device_node.h"
#include "transports/transport.h"
#include "vsphere/inventory.h"
#include "vsphere/session.h"

namespace vix {

namespace {

constexpr TextKey kSanDevRoot{"vixfs.san.devRoot", "/dev",
                              "where san looks for a LUN's disk/by-id links"};

constexpr std::string_view kRdmBacking = "VirtualDiskRawDiskMappingVer1BackingInfo";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool all_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
  });
}

// Length in hex digits of an NAA designator, from its first digit (the NAA type); 0 if unknown.
size_t naa_hex_length(char type) {
  switch (type) {
    case '6':
      return 32;  // IEEE Registered Extended
    case '2':
    case '3':
    case '5':
      return 16;  // IEEE Extended, Locally Assigned, IEEE Registered
    default:
      return 0;
  }
}

bool is_bare_naa(std::string_view hex) {
  return !hex.empty() && naa_hex_length(hex[0]) == hex.size();
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    const size_t b = item.find_first_not_of(" \t");
    const size_t e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
    pos = comma + 1;
  }
  return out;
}

bool matches_any(const std::vector<std::string>& patterns, const std::string& link,
                 const std::string& node, std::string* which) {
  for (const std::string& p : patterns) {
    for (const std::string* name : {&link, &node}) {
      if (!name->empty() && fnmatch(p.c_str(), name->c_str(), FNM_PATHNAME) == 0) {
        *which = p;
        return true;
      }
    }
  }
  return false;
}

// The inventory's record of the disk at `path` on the connection's VM, or its snapshot.
const vsphere::VirtualDisk* find_disk(const TransportContext& ctx, const std::string& path) {
  const vsphere::VirtualMachine* vm = ctx.remote->inventory().find_vm(ctx.remote->vm());
  if (vm == nullptr) return nullptr;
  const std::vector<vsphere::VirtualDisk>* disks = &vm->disks;
  if (!ctx.snapshot.empty()) {
    const vsphere::Snapshot* snap = vsphere::find_snapshot(vm->snapshots, ctx.snapshot);
    if (snap == nullptr) return nullptr;
    disks = &snap->disks;
  }
  for (const vsphere::VirtualDisk& d : *disks) {
    if (d.file_name() == path) return &d;
  }
  return nullptr;
}

// The NAA of a block device from sysfs (/sys/block/<name>/device/wwid reads "naa.<hex>"): for
// LUNs udev has not named (no by-id links). Only under the real /dev; a handful of entries.
std::string sysfs_device_for(const std::string& naa) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/sys/block", ec), end;
  for (int n = 0; !ec && it != end && n < 4096; it.increment(ec), ++n) {
    std::ifstream in(it->path() / "device" / "wwid");
    std::string wwid;
    if (!in || !std::getline(in, wwid)) continue;
    while (!wwid.empty() && std::isspace(static_cast<unsigned char>(wwid.back()))) wwid.pop_back();
    if (lower(wwid) != "naa." + naa) continue;
    // sysfs writes '/' in a device name as '!' (cciss!c0d0 is /dev/cciss/c0d0).
    std::string name = it->path().filename().string();
    std::replace(name.begin(), name.end(), '!', '/');
    return "/dev/" + name;
  }
  return "";
}

class SanTransport final : public Transport {
 public:
  std::string_view name() const override { return "san"; }

  Result<std::unique_ptr<BlockDevice>> open(const TransportContext& ctx, const std::string& path,
                                            uint32_t flags) override {
    if (ctx.remote == nullptr) {
      return fail(VIX_E_NOT_SUPPORTED,
                  "san: not supported for local disks (san reads the LUN of a vSphere disk)");
    }
    const vsphere::VirtualDisk* disk = find_disk(ctx, path);
    if (disk == nullptr || disk->chain.empty()) {
      return fail(VIX_E_NOT_SUPPORTED, "san: not found: " + path + " is not a disk of " +
                                           ctx.remote->vm() +
                                           (ctx.snapshot.empty() ? "" : " " + ctx.snapshot));
    }
    const vsphere::DiskBacking& own = disk->chain.front();
    // Only a mapping with no parent is the LUN's bytes: a virtual-mode RDM with a snapshot is a
    // delta file (typed as an RDM backing, or untyped) over the LUN, and its data is in the
    // delta, inside the datastore.
    if (own.type != kRdmBacking || disk->chain.size() > 1) {
      const bool delta_over_rdm =
          disk->chain.size() > 1 &&
          std::any_of(disk->chain.begin(), disk->chain.end(),
                      [](const vsphere::DiskBacking& b) { return b.type == kRdmBacking; });
      return fail(VIX_E_DISK_NEEDVMFS,
                  "san: not supported for this backing: " + path + " is " +
                      (delta_over_rdm
                           ? std::string("a delta disk over a raw device mapping")
                           : "a " + (own.type.empty() ? std::string("virtual disk") : own.type)) +
                      " file inside a datastore; san reads raw device mappings only (a disk in "
                      "a VMFS volume needs a VMFS reader, which vixfs does not have)");
    }
    if (!ctx.snapshot.empty() &&
        (own.compatibility_mode == "physicalMode" || own.disk_mode.rfind("independent", 0) == 0)) {
      // A snapshot does not freeze a physical-mode or independent RDM: its LUN holds the disk
      // as it is now, not as it was at the snapshot.
      return fail(VIX_E_NOT_SUPPORTED,
                  "san: not supported: " + path + " in " + ctx.snapshot + " is a " +
                      (own.compatibility_mode.empty() ? own.disk_mode : own.compatibility_mode) +
                      " raw device mapping, which snapshots do not freeze");
    }

    std::optional<std::string> naa = naa_from_lun_uuid(own.lun_uuid);
    if (!naa) naa = naa_from_device_name(own.device_name);
    if (!naa) {
      return fail(VIX_E_NOT_SUPPORTED,
                  "san: not found: " + path + ": the LUN has no NAA identifier (lunUuid \"" +
                      own.lun_uuid + "\", deviceName \"" + own.device_name + "\")");
    }

    std::string dev_root = ctx.config.get(kSanDevRoot);
    while (dev_root.size() > 1 && dev_root.back() == '/') dev_root.pop_back();
    std::string link;
    const std::vector<std::string> candidates = san_device_candidates(dev_root, *naa);
    for (const std::string& c : candidates) {
      struct stat st {};
      if (::stat(c.c_str(), &st) == 0 && (S_ISBLK(st.st_mode) || S_ISREG(st.st_mode))) {
        link = c;
        break;
      }
    }
    if (link.empty() && dev_root == "/dev") link = sysfs_device_for(*naa);
    if (link.empty()) {
      return fail(VIX_E_NOT_SUPPORTED, "san: not reachable: LUN naa." + *naa + " of " + path +
                                           " is not visible on this host (no " +
                                           candidates.front() + ")");
    }
    std::string node = link;
    if (char* real = ::realpath(link.c_str(), nullptr)) {
      node = real;
      std::free(real);
    }
    std::string why;
    if (!SanDeviceFilter::from_config(ctx.config).allows(link, node, &why)) {
      return fail(VIX_E_NOT_SUPPORTED,
                  "san: not permitted: " + node + " (LUN naa." + *naa + ") is excluded by " + why);
    }

    DeviceNodeOptions options;
    // A snapshot is immutable whatever the connection allows.
    options.read_only =
        ctx.read_only || !ctx.snapshot.empty() || (flags & VIXDISKLIB_FLAG_OPEN_READ_ONLY) != 0;
    options.unbuffered = (flags & VIXDISKLIB_FLAG_OPEN_UNBUFFERED) != 0;
    options.expected_capacity_bytes = disk->capacity_bytes;
    options.transport_name = "san";
    auto dev = open_device_node(node, options);
    if (!dev.ok()) {
      Error e = std::move(dev).error();
      e.message = "san: LUN naa." + *naa + " of " + path + ": " + e.message;
      return e;
    }
    return dev;
  }
};

}  // namespace

std::optional<std::string> naa_from_lun_uuid(std::string_view lun_uuid) {
  std::string hex;
  std::string_view s = lun_uuid;
  std::string lowered = lower(s);
  std::string_view l = lowered;
  if (l.rfind("vml.", 0) == 0 || l.rfind("naa.", 0) == 0) l.remove_prefix(4);
  for (char c : l) {
    if (c == '-' || c == ':' || c == ' ') continue;
    hex += c;
  }
  if (!all_hex(hex)) return std::nullopt;
  if (lowered.rfind("naa.", 0) == 0 || is_bare_naa(hex)) {
    return is_bare_naa(hex) ? std::optional<std::string>(hex) : std::nullopt;
  }
  // VML: type 02 (NAA), device type, LUN (2 bytes), reserved, then the designator.
  constexpr size_t kHeader = 10;
  if (hex.size() <= kHeader || hex.compare(0, 2, "02") != 0) return std::nullopt;
  const size_t len = naa_hex_length(hex[kHeader]);
  if (len == 0 || hex.size() < kHeader + len) return std::nullopt;
  return hex.substr(kHeader, len);
}

std::optional<std::string> naa_from_device_name(std::string_view device_name) {
  const size_t slash = device_name.rfind('/');
  std::string name =
      lower(slash == std::string_view::npos ? device_name : device_name.substr(slash + 1));
  if (name.rfind("naa.", 0) != 0) return std::nullopt;
  std::string hex = name.substr(4);
  if (!all_hex(hex) || !is_bare_naa(hex)) return std::nullopt;
  return hex;
}

std::vector<std::string> san_device_candidates(const std::string& dev_root,
                                               const std::string& naa) {
  const std::string by_id = dev_root + "/disk/by-id/";
  return {by_id + "wwn-0x" + naa, by_id + "scsi-3" + naa, dev_root + "/wwn-0x" + naa,
          dev_root + "/scsi-3" + naa};
}

SanDeviceFilter SanDeviceFilter::from_config(const Config& config) {
  SanDeviceFilter f;
  for (const TextKey* key : {&kSanWhitelist, &kSanAllowList}) {
    for (std::string& p : split_list(config.get(*key))) f.white_.push_back(std::move(p));
  }
  for (const TextKey* key : {&kSanBlacklist, &kSanDenyList}) {
    for (std::string& p : split_list(config.get(*key))) {
      if (lower(p) == "all") {
        f.black_all_ = true;
      } else {
        f.black_.push_back(std::move(p));
      }
    }
  }
  return f;
}

bool SanDeviceFilter::allows(const std::string& link, const std::string& node,
                             std::string* why) const {
  std::string which;
  if (matches_any(white_, link, node, &which)) return true;
  if (black_all_) {
    *why = "blacklist \"all\" (not in vixDiskLib.transport.san.whitelist)";
    return false;
  }
  if (matches_any(black_, link, node, &which)) {
    *why = "vixDiskLib.transport.san.blacklist entry \"" + which + "\"";
    return false;
  }
  return true;
}

KeyList san_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kSanDevRoot};
  return kKeys;
}

std::unique_ptr<Transport> make_san_transport() {
  return std::make_unique<SanTransport>();
}

}  // namespace vix
