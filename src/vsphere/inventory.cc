#include "vsphere/inventory.h"

#include <cstdio>

namespace vix::vsphere {

const std::string& VirtualDisk::file_name() const {
  static const std::string kEmpty;
  return chain.empty() ? kEmpty : chain.front().file_name;
}

std::string VirtualDisk::slot_name() const {
  if (controller_kind.empty() || bus < 0 || unit < 0) return "disk" + std::to_string(key);
  return controller_kind + std::to_string(bus) + "-" + std::to_string(unit);
}

const VirtualMachine* Inventory::find_vm(const std::string& moref) const {
  for (const auto& vm : vms) {
    if (vm.moref == moref) return &vm;
  }
  return nullptr;
}

const Datastore* Inventory::find_datastore_by_name(const std::string& name) const {
  for (const auto& ds : datastores) {
    if (ds.name == name) return &ds;
  }
  return nullptr;
}

const Datacenter* Inventory::find_datacenter(const std::string& moref) const {
  for (const auto& dc : datacenters) {
    if (dc.moref == moref) return &dc;
  }
  return nullptr;
}

static void flatten_into(const std::vector<Snapshot>& nodes, std::vector<const Snapshot*>& out) {
  // The parser bounds the depth (kMaxSnapshotDepth), so recursion here is bounded too.
  for (const auto& s : nodes) {
    out.push_back(&s);
    flatten_into(s.children, out);
  }
}

std::vector<const Snapshot*> flatten(const std::vector<Snapshot>& roots) {
  std::vector<const Snapshot*> out;
  flatten_into(roots, out);
  return out;
}

const Snapshot* find_snapshot(const std::vector<Snapshot>& roots, const std::string& moref) {
  for (const Snapshot* s : flatten(roots)) {
    if (s->moref == moref) return s;
  }
  return nullptr;
}

std::optional<DatastorePath> parse_datastore_path(const std::string& text) {
  if (text.empty() || text[0] != '[') return std::nullopt;
  size_t close = text.find(']');
  if (close == std::string::npos || close == 1) return std::nullopt;
  DatastorePath p;
  p.datastore = text.substr(1, close - 1);
  size_t start = close + 1;
  while (start < text.size() && text[start] == ' ') ++start;
  p.path = text.substr(start);
  return p;
}

static std::string percent_encode(const std::string& s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string datastore_file_url(const std::string& endpoint, const std::string& dc_path,
                               const std::string& ds_name, const std::string& path) {
  // scheme://authority of the SOAP endpoint; the /folder API sits at the server root.
  std::string base = endpoint;
  size_t scheme_end = base.find("://");
  size_t path_start = base.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
  if (path_start != std::string::npos) base.resize(path_start);
  return base + "/folder/" + percent_encode(path, true) +
         "?dcPath=" + percent_encode(dc_path, false) + "&dsName=" + percent_encode(ds_name, false);
}

}  // namespace vix::vsphere
