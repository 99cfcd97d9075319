#include "vix/capi_support.h"

#include <cstdlib>
#include <cstring>

#include "common/byte_source.h"
#include "vmdk/disk_files.h"

namespace vix::capi {

namespace {

// Its address marks the params structs whose strings we allocated (the `state` member).
char owned_strings_marker;

VixDiskLibConnectParamsState* owned_marker() {
  return reinterpret_cast<VixDiskLibConnectParamsState*>(&owned_strings_marker);
}

std::string str_or_empty(const char* s) {
  return s ? std::string(s) : std::string();
}

// strdup that reports failure; empty strings become NULL (VDDK's "not set").
bool dup(const std::string& s, char** out) {
  *out = nullptr;
  if (s.empty()) return true;
  *out = strdup(s.c_str());
  return *out != nullptr;
}

}  // namespace

ConnectSpec spec_from_params(const VixDiskLibConnectParams* p) {
  ConnectSpec spec;
  if (p == nullptr) return spec;
  spec.vmx_spec = str_or_empty(p->vmxSpec);
  spec.server = str_or_empty(p->serverName);
  spec.thumbprint = str_or_empty(p->thumbPrint);
  spec.cred_type = p->credType;
  switch (p->credType) {
    case VIXDISKLIB_CRED_UID:
      spec.user = str_or_empty(p->creds.uid.userName);
      spec.password = str_or_empty(p->creds.uid.password);
      break;
    case VIXDISKLIB_CRED_SESSIONID:
      spec.cookie = str_or_empty(p->creds.sessionId.cookie);
      spec.user = str_or_empty(p->creds.sessionId.userName);
      spec.key = str_or_empty(p->creds.sessionId.key);
      break;
    default:
      break;
  }
  spec.port = p->port;
  spec.nfc_host_port = p->nfcHostPort;
  return spec;
}

VixDiskLibConnectParams* params_from_spec(const ConnectSpec& spec) {
  auto* p = static_cast<VixDiskLibConnectParams*>(calloc(1, sizeof(VixDiskLibConnectParams)));
  if (p == nullptr) return nullptr;
  p->state = owned_marker();
  p->credType = spec.cred_type;
  p->port = spec.port;
  p->nfcHostPort = spec.nfc_host_port;
  bool ok = dup(spec.vmx_spec, &p->vmxSpec) && dup(spec.server, &p->serverName) &&
            dup(spec.thumbprint, &p->thumbPrint);
  if (ok && spec.cred_type == VIXDISKLIB_CRED_UID) {
    ok = dup(spec.user, &p->creds.uid.userName) && dup(spec.password, &p->creds.uid.password);
  } else if (ok && spec.cred_type == VIXDISKLIB_CRED_SESSIONID) {
    ok = dup(spec.cookie, &p->creds.sessionId.cookie) &&
         dup(spec.user, &p->creds.sessionId.userName) && dup(spec.key, &p->creds.sessionId.key);
  }
  if (!ok) {
    free_connect_params(p);
    return nullptr;
  }
  return p;
}

bool owns_strings(const VixDiskLibConnectParams* p) {
  return p && p->state == owned_marker();
}

void free_connect_params(VixDiskLibConnectParams* p) {
  if (p == nullptr) return;
  if (owns_strings(p)) {
    free(p->vmxSpec);
    free(p->serverName);
    free(p->thumbPrint);
    if (p->credType == VIXDISKLIB_CRED_UID) {
      if (p->creds.uid.password) {
        explicit_bzero(p->creds.uid.password, strlen(p->creds.uid.password));
      }
      free(p->creds.uid.userName);
      free(p->creds.uid.password);
    } else if (p->credType == VIXDISKLIB_CRED_SESSIONID) {
      if (p->creds.sessionId.key) {
        explicit_bzero(p->creds.sessionId.key, strlen(p->creds.sessionId.key));
      }
      free(p->creds.sessionId.cookie);
      free(p->creds.sessionId.userName);
      free(p->creds.sessionId.key);
    }
  }
  free(p);
}

VixDiskLibInfo* make_info(const DiskInfo& d) {
  auto* info = static_cast<VixDiskLibInfo*>(calloc(1, sizeof(VixDiskLibInfo)));
  if (info == nullptr) return nullptr;
  info->biosGeo = {d.bios_geometry.cylinders, d.bios_geometry.heads, d.bios_geometry.sectors};
  info->physGeo = {d.phys_geometry.cylinders, d.phys_geometry.heads, d.phys_geometry.sectors};
  info->capacity = d.capacity_sectors;
  info->adapterType = d.adapter;
  info->numLinks = d.num_links;
  // Only 512-byte sectors exist here; nbdkit needs a power of two (it derives its block size).
  info->logicalSectorSize = VIXDISKLIB_SECTOR_SIZE;
  info->physicalSectorSize = VIXDISKLIB_SECTOR_SIZE;
  // No parent: NULL, as VDDK. uuid: always a string, since samples print it unchecked.
  bool ok = dup(d.parent_file_name_hint, &info->parentFileNameHint);
  if (ok) {
    info->uuid = strdup(d.uuid.c_str());
    ok = info->uuid != nullptr;
  }
  if (!ok) {
    free_info(info);
    return nullptr;
  }
  return info;
}

void free_info(VixDiskLibInfo* info) {
  if (info == nullptr) return;
  free(info->parentFileNameHint);
  free(info->uuid);
  free(info);
}

VixDiskLibBlockList* make_block_list(const std::vector<SectorExtent>& extents) {
  const size_t n = extents.size();
  const size_t bytes =
      offsetof(VixDiskLibBlockList, blocks) + sizeof(VixDiskLibBlock) * (n == 0 ? 1 : n);
  auto* list = static_cast<VixDiskLibBlockList*>(calloc(1, bytes));
  if (list == nullptr) return nullptr;
  list->numBlocks = static_cast<uint32>(n);
  for (size_t i = 0; i < n; ++i) list->blocks[i] = {extents[i].start, extents[i].count};
  return list;
}

Result<void> copy_metadata_keys(const std::map<std::string, std::string>& md, char* buf, size_t len,
                                size_t* required) {
  size_t need = 1;  // the final extra NUL
  for (const auto& [k, v] : md) need += k.size() + 1;
  if (required) *required = need;
  if (buf == nullptr || len < need) {
    return fail(VIX_E_BUFFER_TOOSMALL, "metadata keys need " + std::to_string(need) +
                                           " bytes, the buffer has " +
                                           std::to_string(buf ? len : 0));
  }
  char* p = buf;
  for (const auto& [k, v] : md) {
    memcpy(p, k.c_str(), k.size() + 1);
    p += k.size() + 1;
  }
  *p = '\0';
  return ok();
}

Result<void> copy_metadata_value(const std::map<std::string, std::string>& md,
                                 const std::string& key, char* buf, size_t len, size_t* required) {
  auto it = md.find(key);
  if (it == md.end()) {
    return fail(VIX_E_DISK_KEY_NOTFOUND, "metadata key '" + key + "' not found");
  }
  const size_t need = it->second.size() + 1;
  if (required) *required = need;
  if (buf == nullptr || len < need) {
    return fail(VIX_E_BUFFER_TOOSMALL, "metadata value of '" + key + "' needs " +
                                           std::to_string(need) + " bytes, the buffer has " +
                                           std::to_string(buf ? len : 0));
  }
  memcpy(buf, it->second.c_str(), need);
  return ok();
}

Result<void> unlink_local_disk(const std::string& path) {
  auto opener = make_local_opener();
  VIX_ASSIGN_OR_RETURN(vmdk::DiskFiles disk, vmdk::disk_files(*opener, path));
  // A text descriptor that does not parse cannot say which extents are the disk's.
  if (disk.kind == vmdk::DiskFiles::Kind::kDescriptor && disk.descriptor_error) {
    return *disk.descriptor_error;
  }
  const std::vector<std::string>& files = disk.files;
  // Extents first: if one cannot be removed, the descriptor still says what is left.
  for (size_t i = files.size(); i-- > 0;) {
    auto r = opener->remove(files[i]);
    if (!r.ok() && !(i != 0 && r.error().code == VIX_E_FILE_NOT_FOUND)) return r;
  }
  return ok();
}

Result<uint64_t> space_needed_for_clone(BlockDevice& dev, VixDiskLibDiskType type) {
  const uint64_t capacity = dev.capacity_sectors();
  constexpr uint64_t kOverhead = 64 * 1024;  // header, descriptor, rounding
  switch (type) {
    case VIXDISKLIB_DISK_MONOLITHIC_FLAT:
    case VIXDISKLIB_DISK_SPLIT_FLAT:
    case VIXDISKLIB_DISK_VMFS_FLAT:
      return capacity * kSectorSize + kOverhead;
    case VIXDISKLIB_DISK_MONOLITHIC_SPARSE:
    case VIXDISKLIB_DISK_SPLIT_SPARSE:
    case VIXDISKLIB_DISK_STREAM_OPTIMIZED:
    case VIXDISKLIB_DISK_VMFS_THIN:
    case VIXDISKLIB_DISK_VMFS_SPARSE:
      break;
    default:
      return fail(VIX_E_INVALID_ARG,
                  "SpaceNeededForClone: unknown disk type " + std::to_string(type));
  }
  // Windows keep the extent lists small however large the disk is.
  constexpr uint64_t kWindow = uint64_t{1} << 24;
  uint64_t allocated = 0;
  for (uint64_t s = 0; s < capacity; s += kWindow) {
    VIX_ASSIGN_OR_RETURN(auto extents, dev.allocated(s, std::min(kWindow, capacity - s)));
    for (const SectorExtent& e : extents) allocated += e.count;
  }
  // Grain tables: 4 bytes per 128-sector grain, kept twice (primary and redundant).
  const uint64_t tables = (capacity + 127) / 128 * 4 * 2;
  return allocated * kSectorSize + tables + kOverhead;
}

}  // namespace vix::capi
