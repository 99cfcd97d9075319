// vixdisk create: a new empty disk of a given type and size, or a delta child of a parent.
#include <string>

#include "tools/cli.h"

namespace vixdisk {

namespace {

struct NamedType {
  const char* name;
  VixDiskLibDiskType type;
};
constexpr NamedType kTypes[] = {
    {"monolithicSparse", VIXDISKLIB_DISK_MONOLITHIC_SPARSE},
    {"monolithicFlat", VIXDISKLIB_DISK_MONOLITHIC_FLAT},
    {"twoGbMaxExtentSparse", VIXDISKLIB_DISK_SPLIT_SPARSE},
    {"twoGbMaxExtentFlat", VIXDISKLIB_DISK_SPLIT_FLAT},
    {"streamOptimized", VIXDISKLIB_DISK_STREAM_OPTIMIZED},
};

}  // namespace

int cmd_create(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(args,
                           {{"size", true, 0},
                            {"type", true, 0},
                            {"adapter", true, 0},
                            {"hw", true, 0},
                            {"parent", true, 0}},
                           &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 1) return usage_error("create needs exactly one DISK");
  const std::string& path = parsed->positional[0];
  const GlobalOptions global = global_options(*parsed);

  if (parsed->has("parent")) {
    for (const char* o : {"size", "type", "adapter", "hw"})
      if (parsed->has(o))
        return usage_error(std::string("--") + o + " cannot be combined with --parent");
    const std::string parent = parsed->get("parent");
    Session session;
    if (int rc = session.start(global, false); rc != kExitOk) return rc;
    // The parent is only read: the child records its CID and file name.
    if (int rc = session.open(parent, true); rc != kExitOk) return rc;
    if (auto r = session.disk().create_child(path, VIXDISKLIB_DISK_MONOLITHIC_SPARSE); !r.ok())
      return vix_error("create child " + path + " of " + parent, r.error());
    note("created " + path + " as a child of " + parent);
    return kExitOk;
  }

  if (!parsed->has("size")) return usage_error("create needs --size SIZE (or --parent PARENT)");
  auto size = parse_size(parsed->get("size"));
  if (!size || *size == 0 || *size % vix::kSectorSize != 0)
    return usage_error("bad --size '" + parsed->get("size") +
                       "': a positive multiple of 512 bytes, e.g. 10G");

  VixDiskLibCreateParams params{};
  params.diskType = VIXDISKLIB_DISK_MONOLITHIC_SPARSE;
  params.adapterType = VIXDISKLIB_ADAPTER_IDE;
  params.hwVersion = 4;  // what qemu-img writes by default (ddb.virtualHWVersion = "4")
  params.capacity = *size / vix::kSectorSize;
  params.logicalSectorSize = 512;
  params.physicalSectorSize = 512;
  if (parsed->has("type")) {
    const std::string t = parsed->get("type");
    bool found = false;
    for (const auto& nt : kTypes) {
      if (t == nt.name) {
        params.diskType = nt.type;
        found = true;
      }
    }
    if (!found) return usage_error("unknown --type '" + t + "'");
  }
  if (parsed->has("adapter")) {
    const std::string a = parsed->get("adapter");
    if (a == "ide") {
      params.adapterType = VIXDISKLIB_ADAPTER_IDE;
    } else if (a == "buslogic") {
      params.adapterType = VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC;
    } else if (a == "lsilogic") {
      params.adapterType = VIXDISKLIB_ADAPTER_SCSI_LSILOGIC;
    } else {
      return usage_error("unknown --adapter '" + a + "' (ide, buslogic or lsilogic)");
    }
  }
  if (parsed->has("hw")) {
    auto hw = parse_size(parsed->get("hw"));
    if (!hw || *hw == 0 || *hw > 255 ||
        parsed->get("hw").find_first_not_of("0123456789") != std::string::npos)
      return usage_error("bad --hw '" + parsed->get("hw") + "': a number from 1 to 255");
    params.hwVersion = static_cast<uint16>(*hw);
  }

  Session session;
  if (int rc = session.start(global, false); rc != kExitOk) return rc;
  if (auto r = session.connection().create(path, params); !r.ok())
    return vix_error("create " + path, r.error());
  note("created " + path + " (" + std::to_string(*size) + " bytes)");
  return kExitOk;
}

}  // namespace vixdisk
