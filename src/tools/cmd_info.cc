// vixdisk info: what GetInfo reports plus the disk database, as text or JSON.
#include <cstdio>
#include <string>

#include "tools/cli.h"

namespace vixdisk {

namespace {

const char* adapter_name(VixDiskLibAdapterType a) {
  switch (a) {
    case VIXDISKLIB_ADAPTER_IDE:
      return "ide";
    case VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC:
      return "buslogic";
    case VIXDISKLIB_ADAPTER_SCSI_LSILOGIC:
      return "lsilogic";
    default:
      return "unknown";
  }
}

std::string geometry_json(const vix::Geometry& g) {
  return "{\"cylinders\": " + std::to_string(g.cylinders) +
         ", \"heads\": " + std::to_string(g.heads) + ", \"sectors\": " + std::to_string(g.sectors) +
         "}";
}

std::string geometry_text(const vix::Geometry& g) {
  return std::to_string(g.cylinders) + "/" + std::to_string(g.heads) + "/" +
         std::to_string(g.sectors) + " (C/H/S)";
}

}  // namespace

int cmd_info(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(args, {{"json", false, 0}}, &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 1) return usage_error("info needs exactly one DISK");
  const std::string& path = parsed->positional[0];

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  if (int rc = session.open(path, true); rc != kExitOk) return rc;
  vix::Disk& disk = session.disk();
  const vix::DiskInfo info = disk.info();

  std::map<std::string, std::string> ddb;
  if (auto md = disk.metadata(); md.ok()) {
    ddb = std::move(md).value();
  } else if (md.error().code != VIX_E_NOT_SUPPORTED) {
    return vix_error("metadata of " + path, md.error());
  }

  const uint64_t bytes = info.capacity_sectors * vix::kSectorSize;
  const std::string transport(disk.transport_name());
  if (parsed->has("json")) {
    std::string out = "{\n";
    out += "  \"path\": " + json_string(path) + ",\n";
    out += "  \"capacity_bytes\": " + std::to_string(bytes) + ",\n";
    out += "  \"capacity_sectors\": " + std::to_string(info.capacity_sectors) + ",\n";
    out += "  \"create_type\": " + json_string(info.create_type) + ",\n";
    out += "  \"adapter\": " + json_string(adapter_name(info.adapter)) + ",\n";
    out += "  \"bios_geometry\": " + geometry_json(info.bios_geometry) + ",\n";
    out += "  \"physical_geometry\": " + geometry_json(info.phys_geometry) + ",\n";
    out += "  \"num_links\": " + std::to_string(info.num_links) + ",\n";
    out += "  \"parent_file_name_hint\": " + json_string(info.parent_file_name_hint) + ",\n";
    out += "  \"uuid\": " + json_string(info.uuid) + ",\n";
    out += "  \"transport\": " + json_string(transport) + ",\n";
    out += "  \"logical_sector_size\": " + std::to_string(info.logical_sector_size) + ",\n";
    out += "  \"physical_sector_size\": " + std::to_string(info.physical_sector_size) + ",\n";
    out += "  \"ddb\": {";
    bool first = true;
    for (const auto& [k, v] : ddb) {
      out += first ? "\n" : ",\n";
      out += "    " + json_string(k) + ": " + json_string(v);
      first = false;
    }
    out += first ? "}\n" : "\n  }\n";
    out += "}\n";
    fputs(out.c_str(), stdout);
  } else {
    printf("disk:                 %s\n", path.c_str());
    printf("capacity:             %llu bytes (%llu sectors, %s)\n",
           static_cast<unsigned long long>(bytes),
           static_cast<unsigned long long>(info.capacity_sectors), human_size(bytes).c_str());
    printf("create type:          %s\n", info.create_type.c_str());
    printf("adapter:              %s\n", adapter_name(info.adapter));
    printf("BIOS geometry:        %s\n", geometry_text(info.bios_geometry).c_str());
    printf("physical geometry:    %s\n", geometry_text(info.phys_geometry).c_str());
    printf("links:                %d\n", info.num_links);
    printf("parent hint:          %s\n",
           info.parent_file_name_hint.empty() ? "(none)" : info.parent_file_name_hint.c_str());
    printf("uuid:                 %s\n", info.uuid.empty() ? "(none)" : info.uuid.c_str());
    printf("transport:            %s\n", transport.c_str());
    printf("sector size:          %u logical, %u physical\n", info.logical_sector_size,
           info.physical_sector_size);
    if (!ddb.empty()) {
      printf("disk database:\n");
      for (const auto& [k, v] : ddb) printf("  %s = \"%s\"\n", k.c_str(), v.c_str());
    }
  }
  if (fflush(stdout) != 0) return io_error("write stdout", errno);
  return kExitOk;
}

}  // namespace vixdisk
