// Disk creation in qemu-img create's exact layout (docs/reference/vmdk-format.md §2.7, §4.2, §6.3,
// §10, §11), so that qemu-img check is clean and qemu-img info agrees, and redo-log children (§7).
#include <algorithm>
#include <filesystem>
#include <vector>

#include "vmdk/descriptor.h"
#include "vmdk/sparse_layout.h"
#include "vmdk/vmdk.h"

namespace vix::vmdk {

namespace {

constexpr uint64_t kSplitSectors = uint64_t{4194304};  // 2 GiB per twoGbMaxExtent piece
constexpr uint64_t kMaxFlatSectors = uint64_t{1} << 54;
constexpr uint64_t kMaxGdEntries = uint64_t{32} << 20;  // qemu: "L1 size too big" beyond this
constexpr size_t kMaxDescriptorText = 1 << 20;
constexpr size_t kEmbeddedArea = 20 * 512;

// One file to make: a KDMV extent (optionally with embedded descriptor text) or a flat extent.
struct FilePlan {
  std::string path;
  bool sparse = false;
  KdmvKind kind = KdmvKind::kSparse;
  uint64_t sectors = 0;
  std::string embedded_descriptor;  // only for monolithic sparse files
};

struct DiskPlan {
  std::string descriptor_path;  // empty when the descriptor is embedded
  std::string descriptor_text;
  std::vector<FilePlan> files;
};

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Splits "dir/name.ext" into "dir/name" and ".ext" (qemu's extent-naming rule, §10).
std::pair<std::string, std::string> split_ext(const std::string& path) {
  auto slash = path.rfind('/');
  auto dot = path.rfind('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return {path, ""};
  return {path.substr(0, dot), path.substr(dot)};
}

std::string numbered(const std::string& path, char letter, size_t n) {
  auto [prefix, ext] = split_ext(path);
  char num[16];
  std::snprintf(num, sizeof num, "%03zu", n);
  return prefix + "-" + letter + num + ext;
}

Result<Descriptor> base_descriptor(const CreateOptions& o, const std::string& path) {
  Descriptor d;
  d.cid = new_content_id();
  d.parent_cid = kNoParentCid;
  std::string adapter;
  uint64_t heads = 255;
  switch (o.adapter) {
    case VIXDISKLIB_ADAPTER_IDE:
      adapter = "ide";
      heads = 16;
      break;
    case VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC:
      adapter = "buslogic";
      break;
    case VIXDISKLIB_ADAPTER_SCSI_LSILOGIC:
      adapter = "lsilogic";
      break;
    default:
      return fail(VIX_E_INVALID_ARG,
                  path + ": unsupported adapter type " + std::to_string(o.adapter));
  }
  // qemu: cylinders = floor(bytes / (63 * heads * 512)), not clamped.
  const uint64_t cylinders = o.capacity_sectors / (63 * heads);
  d.ddb = {{"ddb.virtualHWVersion", std::to_string(o.hw_version)},
           {"ddb.geometry.cylinders", std::to_string(cylinders)},
           {"ddb.geometry.heads", std::to_string(heads)},
           {"ddb.geometry.sectors", "63"},
           {"ddb.adapterType", adapter},
           {"ddb.toolsVersion", "2147483647"}};
  return d;
}

Result<void> check_sparse_capacity(uint64_t sectors, const std::string& path) {
  KdmvCreateLayout l = kdmv_create_layout(std::min(sectors, kMaxFlatSectors));
  if (sectors > kMaxFlatSectors || l.gt_count > kMaxGdEntries) {
    return fail(VIX_E_INVALID_ARG, path + ": capacity of " + std::to_string(sectors) +
                                       " sectors is too large for a sparse extent");
  }
  return ok();
}

void add_split_extents(DiskPlan& plan, Descriptor& d, const std::string& path, uint64_t capacity,
                       bool sparse) {
  size_t n = 0;
  for (uint64_t done = 0; done < capacity; done += kSplitSectors) {
    const uint64_t sectors = std::min(kSplitSectors, capacity - done);
    const std::string file = numbered(path, sparse ? 's' : 'f', ++n);
    d.extents.push_back(sparse ? ExtentLine{"RW", sectors, "SPARSE", base_name(file), 0, false}
                               : ExtentLine{"RW", sectors, "FLAT", base_name(file), 0, true});
    plan.files.push_back(FilePlan{file, sparse, KdmvKind::kSparse, sectors, ""});
  }
}

// Builds the plan for a disk of `type`; d carries the CIDs, hint and DDB already.
Result<DiskPlan> plan_disk(VixDiskLibDiskType type, const std::string& path, uint64_t capacity,
                           Descriptor d) {
  DiskPlan plan;
  switch (type) {
    case VIXDISKLIB_DISK_MONOLITHIC_SPARSE:
    case VIXDISKLIB_DISK_STREAM_OPTIMIZED: {
      VIX_TRY(check_sparse_capacity(capacity, path));
      const bool stream = type == VIXDISKLIB_DISK_STREAM_OPTIMIZED;
      d.create_type = stream ? "streamOptimized" : "monolithicSparse";
      d.extents.push_back(ExtentLine{"RW", capacity, "SPARSE", base_name(path), 0, false});
      std::string text = d.render();
      if (text.size() > kEmbeddedArea) {
        return fail(VIX_E_FILE_NAME_INVALID,
                    path + ": embedded descriptor would exceed 20 sectors (name too long)");
      }
      plan.files.push_back(FilePlan{path, true,
                                    stream ? KdmvKind::kStreamOptimized : KdmvKind::kSparse,
                                    capacity, std::move(text)});
      return plan;
    }
    case VIXDISKLIB_DISK_SPLIT_SPARSE:
    case VIXDISKLIB_DISK_SPLIT_FLAT: {
      const bool sparse = type == VIXDISKLIB_DISK_SPLIT_SPARSE;
      if (capacity > kSplitSectors * 9999) {
        return fail(VIX_E_INVALID_ARG, path + ": capacity of " + std::to_string(capacity) +
                                           " sectors needs more than 9999 split extents");
      }
      d.create_type = sparse ? "twoGbMaxExtentSparse" : "twoGbMaxExtentFlat";
      add_split_extents(plan, d, path, capacity, sparse);
      break;
    }
    case VIXDISKLIB_DISK_MONOLITHIC_FLAT:
    case VIXDISKLIB_DISK_VMFS_FLAT: {
      if (capacity > kMaxFlatSectors) {
        return fail(VIX_E_INVALID_ARG,
                    path + ": capacity of " + std::to_string(capacity) + " sectors is too large");
      }
      auto [prefix, ext] = split_ext(path);
      const std::string file = prefix + "-flat" + ext;
      const bool vmfs = type == VIXDISKLIB_DISK_VMFS_FLAT;
      d.create_type = vmfs ? "vmfs" : "monolithicFlat";
      // VMFS extents carry no offset field (§11).
      d.extents.push_back(
          ExtentLine{"RW", capacity, vmfs ? "VMFS" : "FLAT", base_name(file), 0, !vmfs});
      plan.files.push_back(FilePlan{file, false, KdmvKind::kSparse, capacity, ""});
      break;
    }
    default:
      return fail(VIX_E_NOT_SUPPORTED, path + ": creating disk type " + std::to_string(type) +
                                           " is not supported (monolithic/split sparse or flat, "
                                           "streamOptimized and vmfs flat are)");
  }
  plan.descriptor_path = path;
  plan.descriptor_text = d.render();
  return plan;
}

Result<void> write_all(ByteSource& src, const void* buf, size_t len, uint64_t off) {
  VIX_ASSIGN_OR_RETURN(size_t n, src.pwrite(buf, len, off));
  if (n != len) return fail(VIX_E_FILE_ERROR, src.name() + ": short write");
  return ok();
}

// Writes the directory at `first_sector` whose entries point at GTs laid after it.
Result<void> write_directory(ByteSource& src, const KdmvCreateLayout& l, uint64_t gd_sector) {
  const uint64_t first_gt = gd_sector + l.gd_sectors;
  constexpr uint64_t kChunkEntries = 128 * 1024;  // 512 KiB of entries per write
  std::vector<uint8_t> buf;
  for (uint64_t i = 0; i < l.gt_count; i += kChunkEntries) {
    const uint64_t n = std::min(kChunkEntries, l.gt_count - i);
    // The last chunk is padded with zero entries to a whole sector.
    buf.assign((n * 4 + 511) / 512 * 512, 0);
    for (uint64_t k = 0; k < n; ++k) store_le(&buf[k * 4], first_gt + l.gt_sectors * (i + k), 4);
    VIX_TRY(write_all(src, buf.data(), buf.size(), gd_sector * 512 + i * 4));
  }
  return ok();
}

Result<void> write_kdmv(ByteSource& src, const FilePlan& f) {
  const KdmvCreateLayout l = kdmv_create_layout(f.sectors);
  if (l.overhead >= (uint64_t{1} << 32)) {
    return fail(VIX_E_INVALID_ARG, f.path + ": sparse metadata would not fit in 2^32 sectors");
  }
  auto header = encode_kdmv_create_header(l, f.kind);
  VIX_TRY(write_all(src, header.data(), header.size(), 0));
  VIX_TRY(src.truncate(l.overhead * 512));
  VIX_TRY(write_directory(src, l, l.rgd_offset));
  VIX_TRY(write_directory(src, l, l.gd_offset));
  if (!f.embedded_descriptor.empty()) {
    VIX_TRY(write_all(src, f.embedded_descriptor.data(), f.embedded_descriptor.size(), 512));
  }
  return ok();
}

class CreatedFiles {
 public:
  explicit CreatedFiles(SourceOpener& opener) : opener_(opener) {}
  ~CreatedFiles() {
    if (committed_) return;
    for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) (void)opener_.remove(*it);
  }
  Result<std::unique_ptr<ByteSource>> create(const std::string& path) {
    auto r = opener_.create(path, /*exclusive=*/true);
    if (r.ok()) paths_.push_back(path);
    return r;
  }
  void commit() { committed_ = true; }

 private:
  SourceOpener& opener_;
  std::vector<std::string> paths_;
  bool committed_ = false;
};

Result<void> execute(SourceOpener& opener, const DiskPlan& plan) {
  CreatedFiles created(opener);
  // Every name is claimed before anything is written, so an existing file fails fast.
  std::unique_ptr<ByteSource> desc;
  if (!plan.descriptor_path.empty()) {
    VIX_ASSIGN_OR_RETURN(desc, created.create(plan.descriptor_path));
  }
  std::vector<std::unique_ptr<ByteSource>> sources;
  for (const auto& f : plan.files) {
    VIX_ASSIGN_OR_RETURN(auto src, created.create(f.path));
    sources.push_back(std::move(src));
  }
  for (size_t i = 0; i < plan.files.size(); ++i) {
    const FilePlan& f = plan.files[i];
    if (f.sparse) {
      VIX_TRY(write_kdmv(*sources[i], f));
    } else {
      VIX_TRY(sources[i]->truncate(f.sectors * 512));
    }
    VIX_TRY(sources[i]->flush());
  }
  if (desc) {
    VIX_TRY(write_all(*desc, plan.descriptor_text.data(), plan.descriptor_text.size(), 0));
    VIX_TRY(desc->flush());
  }
  created.commit();
  return ok();
}

// --- reading a parent for create_child ---------------------------------------------------

struct ParentInfo {
  uint32_t cid = 0;
  uint64_t capacity = 0;
  std::vector<std::pair<std::string, std::string>> ddb;
};

Result<std::string> read_text(ByteSource& src, uint64_t off, uint64_t len) {
  std::string text(len, '\0');
  VIX_ASSIGN_OR_RETURN(size_t n, src.pread(text.data(), text.size(), off));
  text.resize(n);
  auto nul = text.find('\0');
  if (nul != std::string::npos) text.resize(nul);
  return text;
}

// Capacity of a sparse extent file named by a text descriptor: its header's, as qemu uses.
Result<uint64_t> sparse_extent_capacity(SourceOpener& opener, const std::string& path) {
  VIX_ASSIGN_OR_RETURN(auto src, opener.open(path, OpenMode{}));
  uint8_t h[512] = {};
  VIX_TRY(src->read_exact(h, 20, 0, "sparse extent header"));
  const uint32_t magic = static_cast<uint32_t>(load_le(h, 4));
  if (magic == 0x564D444B) return load_le(h + 12, 8);
  if (magic == 0x44574F43) return load_le(h + 12, 4);  // COWD: u32 capacity
  return fail(VIX_E_DISK_INVAL, path + ": sparse extent has no KDMV/COWD magic");
}

Result<ParentInfo> read_parent(SourceOpener& opener, const std::string& path) {
  VIX_ASSIGN_OR_RETURN(auto src, opener.open(path, OpenMode{}));
  VIX_ASSIGN_OR_RETURN(uint64_t size, src->size());
  uint8_t h[512] = {};
  VIX_ASSIGN_OR_RETURN(size_t got, src->pread(h, sizeof h, 0));
  const uint32_t magic = got >= 4 ? static_cast<uint32_t>(load_le(h, 4)) : 0;
  if (magic == 0x44574F43) {
    return fail(VIX_E_DISK_INVAL, path + ": a bare COWD extent has no descriptor to chain to");
  }
  ParentInfo info;
  std::string text;
  bool capacity_from_header = false;
  if (magic == 0x564D444B) {
    if (got < 79) return fail(VIX_E_DISK_INVAL, path + ": truncated sparse header");
    const uint64_t cap = load_le(h + 12, 8);
    const uint64_t desc_off = load_le(h + 28, 8);
    const uint64_t desc_size = load_le(h + 36, 8);
    if (desc_off == 0 || desc_size == 0) {
      return fail(VIX_E_DISK_INVAL, path + ": sparse file has no embedded descriptor");
    }
    if (desc_off > size / 512) {
      return fail(VIX_E_DISK_INVAL, path + ": descriptorOffset points past the end of the file");
    }
    VIX_ASSIGN_OR_RETURN(text, read_text(*src, desc_off * 512,
                                         std::min<uint64_t>(desc_size * 512, kMaxDescriptorText)));
    // capacity 0 with a descriptor: the text describes other extents (§2.6).
    capacity_from_header = cap != 0;
    info.capacity = cap;
  } else {
    if (size > kMaxDescriptorText) {
      return fail(VIX_E_DISK_INVAL, path + ": neither a sparse extent nor a descriptor (" +
                                        std::to_string(size) + " bytes of text)");
    }
    VIX_ASSIGN_OR_RETURN(text, read_text(*src, 0, size));
  }
  VIX_ASSIGN_OR_RETURN(Descriptor d, Descriptor::parse(text, path));
  info.cid = d.cid;
  info.ddb = d.ddb;
  if (!capacity_from_header) {
    uint64_t sum = 0;
    for (const auto& e : d.extents) {
      uint64_t n = e.sectors;
      if (e.type == "SPARSE" || e.type == "VMFSSPARSE") {
        VIX_ASSIGN_OR_RETURN(n, sparse_extent_capacity(opener, opener.resolve(path, e.file)));
      }
      sum += n;
      if (sum > kMaxFlatSectors) {
        return fail(VIX_E_DISK_INVAL, path + ": total extent size is out of range");
      }
    }
    info.capacity = sum;
  }
  if (info.capacity == 0) return fail(VIX_E_DISK_INVAL, path + ": parent has no extents");
  return info;
}

// The hint as the child should record it: the bare name when both share a folder, else an
// absolute path (qemu resolves relative hints against the child's folder, §7).
std::string parent_hint(const std::string& parent_path, const std::string& child_path) {
  namespace fs = std::filesystem;
  fs::path p(parent_path), c(child_path);
  auto dir = [](const fs::path& x) {
    fs::path d = x.parent_path().lexically_normal();
    return d.empty() ? fs::path(".") : d;
  };
  if (dir(p) == dir(c)) return p.filename().string();
  if (p.is_absolute()) return p.lexically_normal().string();
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  return ec ? parent_path : abs.lexically_normal().string();
}

}  // namespace

Result<void> create(SourceOpener& opener, const std::string& path, const CreateOptions& options) {
  if (options.capacity_sectors == 0) {
    return fail(VIX_E_INVALID_ARG, path + ": cannot create a disk of capacity 0");
  }
  VIX_ASSIGN_OR_RETURN(Descriptor d, base_descriptor(options, path));
  VIX_ASSIGN_OR_RETURN(DiskPlan plan,
                       plan_disk(options.type, path, options.capacity_sectors, std::move(d)));
  return execute(opener, plan);
}

Result<void> create_child(SourceOpener& opener, const std::string& parent_path,
                          const std::string& child_path, VixDiskLibDiskType type) {
  if (type != VIXDISKLIB_DISK_MONOLITHIC_SPARSE && type != VIXDISKLIB_DISK_SPLIT_SPARSE) {
    return fail(VIX_E_NOT_SUPPORTED, child_path +
                                         ": a redo log must be monolithic or split "
                                         "sparse (type " +
                                         std::to_string(type) + " requested)");
  }
  VIX_ASSIGN_OR_RETURN(ParentInfo parent, read_parent(opener, parent_path));
  CreateOptions o;
  o.capacity_sectors = parent.capacity;
  o.type = type;
  VIX_ASSIGN_OR_RETURN(Descriptor d, base_descriptor(o, child_path));
  d.parent_cid = parent.cid;
  // A redo log describes the same virtual disk: keep the parent's adapter, geometry, hw version.
  for (auto& [key, value] : d.ddb) {
    for (const auto& [pkey, pvalue] : parent.ddb) {
      if (pkey == key && !pvalue.empty()) value = pvalue;
    }
  }
  d.parent_file_name_hint = parent_hint(parent_path, child_path);
  if (d.parent_file_name_hint.find_first_of("\"\r\n") != std::string::npos) {
    return fail(VIX_E_FILE_NAME_INVALID,
                child_path + ": parent path cannot be written as a hint: " + parent_path);
  }
  VIX_ASSIGN_OR_RETURN(DiskPlan plan, plan_disk(type, child_path, parent.capacity, std::move(d)));
  return execute(opener, plan);
}

Result<void> create_redo_log(SourceOpener& opener, const std::string& path,
                             uint64_t capacity_sectors, const std::string& parent_hint) {
  if (parent_hint.empty() || parent_hint.find_first_of("\"\r\n") != std::string::npos) {
    return fail(VIX_E_FILE_NAME_INVALID,
                path + ": the disk's name cannot be written as a parent hint: " + parent_hint);
  }
  CreateOptions o;
  o.capacity_sectors = capacity_sectors;
  VIX_ASSIGN_OR_RETURN(Descriptor d, base_descriptor(o, path));
  d.parent_cid = 0xffffffff;
  d.parent_file_name_hint = parent_hint;
  VIX_ASSIGN_OR_RETURN(DiskPlan plan, plan_disk(VIXDISKLIB_DISK_MONOLITHIC_SPARSE, path,
                                                capacity_sectors, std::move(d)));
  return execute(opener, plan);
}

}  // namespace vix::vmdk
