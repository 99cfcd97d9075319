// vmdk::open: reads the descriptor (separate or embedded), opens the extents, then walks the
// parent chain through parentFileNameHint. CIDs are checked lazily by VmdkDisk (§7).
#include <cstring>
#include <filesystem>
#include <set>

#include "vmdk/flat_extent.h"
#include "vmdk/sesparse_extent.h"
#include "vmdk/vmdk.h"
#include "vmdk/vmdk_disk.h"

namespace vix::vmdk {

namespace {

constexpr size_t kMaxChainDepth = 255;
constexpr uint64_t kMaxDescriptorBytes = 1 << 20;
constexpr uint64_t kMaxDiskSectors = uint64_t{1} << 54;

Result<void> add_extent(Link& link, std::unique_ptr<Extent> ext) {
  uint64_t start = link.starts.back();
  if (ext->sectors() > kMaxDiskSectors - start)
    return fail(VIX_E_DISK_INVAL, link.path + ": extents add up to an absurd capacity");
  link.starts.push_back(start + ext->sectors());
  link.extents.push_back(std::move(ext));
  return ok();
}

Result<void> open_extents(SourceOpener& opener, Link& link, bool writable) {
  // Reading on would hand out ciphertext as the disk's bytes.
  if (!link.desc.encryption_key.empty()) {
    return fail(VIX_E_DISK_NOKEY, link.path + ": the disk is encrypted (descriptor key '" +
                                      link.desc.encryption_key +
                                      "'): vixfs has no key server client; read it through its "
                                      "host (nbdssl or hotadd)");
  }
  for (size_t i = 0; i < link.desc.extents.size(); ++i) {
    const ExtentLine& line = link.desc.extents[i];
    std::string where = link.path + ": extent " + std::to_string(i + 1);
    if (line.type == "ZERO" || line.access == "NOACCESS") {
      VIX_TRY(add_extent(link, make_flat_extent(nullptr, line.sectors, 0)));
      continue;
    }
    const bool flat = line.type == "FLAT" || line.type == "VMFS" || line.type == "VMFSRAW" ||
                      line.type == "VMFSRDM";
    const bool sparse = line.type == "SPARSE" || line.type == "VMFSSPARSE";
    const bool sesparse = line.type == "SESPARSE";
    // vSAN and vVol descriptors name objects, not files: only the host can read those.
    const size_t scheme = line.file.find("://");
    if (line.type == "VSANSPARSE" || scheme != std::string::npos) {
      const std::string object =
          scheme != std::string::npos ? line.file.substr(0, scheme) : std::string("vsan");
      return fail(VIX_E_DISK_NOTSUPPORTED,
                  where + ": '" + line.file + "' (" + line.type + ") is a " + object +
                      " object, not a file: read this disk through its host (nbd, nbdssl or "
                      "hotadd)");
    }
    if (!flat && !sparse && !sesparse)
      return fail(VIX_E_DISK_NOTSUPPORTED, where + ": extent type '" + line.type + "' unsupported");
    if (line.file.empty()) return fail(VIX_E_DISK_INVAL, where + ": no file name");
    std::string file = opener.resolve(link.path, line.file);
    OpenMode mode;
    // SEsparse is read-only (§9): its file is never opened for writing.
    mode.writable = writable && line.access == "RW" && !sesparse;
    auto src = opener.open(file, mode);
    if (!src.ok()) {
      Error e = std::move(src).error();
      if (e.code == VIX_E_FILE_NOT_FOUND) e.message = where + ": " + e.message;
      return e;
    }
    if (flat) {
      if (line.offset > kMaxDiskSectors)
        return fail(VIX_E_DISK_INVAL,
                    where + ": offset " + std::to_string(line.offset) + " is absurd");
      VIX_TRY(add_extent(link, make_flat_extent(std::move(*src), line.sectors, line.offset)));
      continue;
    }
    if (sesparse) {
      VIX_ASSIGN_OR_RETURN(auto ext, SeSparseExtent::open(std::move(*src)));
      VIX_TRY(add_extent(link, std::move(ext)));
      continue;
    }
    VIX_ASSIGN_OR_RETURN(auto ext, SparseExtent::open(std::move(*src)));
    VIX_TRY(add_extent(link, std::move(ext)));
  }
  return ok();
}

Result<std::unique_ptr<Link>> open_link(SourceOpener& opener, const std::string& path,
                                        bool writable) {
  auto link = std::make_unique<Link>();
  link->path = path;
  link->starts.push_back(0);
  OpenMode mode;
  mode.writable = writable;
  VIX_ASSIGN_OR_RETURN(auto src, opener.open(path, mode));
  VIX_ASSIGN_OR_RETURN(uint64_t size, src->size());
  uint8_t magic[4] = {};
  if (size >= 4) VIX_TRY(src->read_exact(magic, 4, 0, "magic"));
  uint32_t m = uint32_t{magic[0]} | uint32_t{magic[1]} << 8 | uint32_t{magic[2]} << 16 |
               uint32_t{magic[3]} << 24;
  if (m == kCowdMagic)
    return fail(VIX_E_DISK_NOTSUPPORTED,
                path + ": a COWD file opens only through a text descriptor (unsupported)");
  if (m == kSeSparseConstMagic)
    return fail(VIX_E_DISK_NOTSUPPORTED,
                path + ": an SEsparse extent opens only through its text descriptor (unsupported)");
  if (m == kSparseMagic) {
    VIX_ASSIGN_OR_RETURN(auto sparse, SparseExtent::open(std::move(src)));
    VIX_ASSIGN_OR_RETURN(std::string text, sparse->read_embedded_descriptor());
    VIX_ASSIGN_OR_RETURN(link->desc, Descriptor::parse(text, path + " (embedded descriptor)"));
    if (sparse->header().capacity == 0 && !link->desc.extents.empty()) {
      // A capacity-0 header whose descriptor describes other extents (§2.6).
      link->embedded = sparse.get();
      link->create_type = link->desc.create_type;
      VIX_TRY(open_extents(opener, *link, writable));
      // Keep the header's file alive: its descriptor area is where CID rewrites go.
      link->desc_src = nullptr;
      link->extents.insert(link->extents.begin(), std::move(sparse));
      link->starts.insert(link->starts.begin(), 0);
      return link;
    }
    // The embedded extent lines are ignored: the file itself is the only extent (qemu).
    link->create_type = sparse->compressed() ? "streamOptimized" : "monolithicSparse";
    link->embedded = sparse.get();
    VIX_TRY(add_extent(*link, std::move(sparse)));
    return link;
  }
  if (size > kMaxDescriptorBytes)
    return fail(VIX_E_DISK_INVAL,
                path + ": neither a sparse extent (no KDMV magic) nor a descriptor under 1 MiB");
  std::string text(size, '\0');
  VIX_TRY(src->read_exact(text.data(), text.size(), 0, "descriptor"));
  if (text.find('\0') != std::string::npos) text.resize(std::strlen(text.c_str()));
  VIX_ASSIGN_OR_RETURN(link->desc, Descriptor::parse(text, path));
  link->create_type = link->desc.create_type;
  link->desc_src = std::move(src);
  VIX_TRY(open_extents(opener, *link, writable));
  if (link->extents.empty()) return fail(VIX_E_DISK_INVAL, path + ": descriptor has no extents");
  return link;
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> open(SourceOpener& opener, const std::string& path,
                                          const OpenOptions& options) {
  std::vector<std::unique_ptr<Link>> links;
  std::set<std::string> seen;
  std::string current = path;
  for (;;) {
    if (links.size() >= kMaxChainDepth) {
      return fail(VIX_E_DISK_TOOMANYREDO, path + ": parent chain is deeper than " +
                                              std::to_string(kMaxChainDepth) + " links");
    }
    // Normalised so that "./self.vmdk" or "a/../x.vmdk" hints are caught too; symlink loops
    // end at the depth cap.
    if (!seen.insert(std::filesystem::path(current).lexically_normal().string()).second)
      return fail(VIX_E_DISK_INVALIDCHAIN, current + ": disk is its own ancestor");
    const bool leaf = links.empty();
    auto link = open_link(opener, current, leaf && !options.read_only);
    if (!link.ok()) {
      Error e = std::move(link).error();
      if (leaf) return e;
      VixError code = e.code == VIX_E_FILE_NOT_FOUND ? VixError{VIX_E_DISK_PARTIALCHAIN} : e.code;
      return fail(code, links.back()->path + ": parent '" +
                            links.back()->desc.parent_file_name_hint + "': " + e.message);
    }
    (*link)->capacity = (*link)->starts.back();
    links.push_back(std::move(*link));
    const Link& last = *links.back();
    if (options.single_link || last.desc.parent_file_name_hint.empty()) break;
    current = opener.resolve(last.path, last.desc.parent_file_name_hint);
  }
  return std::unique_ptr<BlockDevice>(
      new VmdkDisk(std::move(links), options.read_only, std::string(options.transport)));
}

Result<std::unique_ptr<BlockDevice>> open_redo_log(SourceOpener& opener, const std::string& path,
                                                   std::unique_ptr<BlockDevice> below) {
  if (!below) return fail(VIX_E_INVALID_ARG, path + ": a redo log needs a disk under it");
  VIX_ASSIGN_OR_RETURN(std::unique_ptr<Link> link, open_link(opener, path, true));
  link->capacity = link->starts.back();
  if (link->capacity != below->capacity_sectors()) {
    return fail(VIX_E_DISK_CAPACITY_MISMATCH,
                path + ": redo log of " + std::to_string(link->capacity) +
                    " sectors over a disk of " + std::to_string(below->capacity_sectors()));
  }
  std::vector<std::unique_ptr<Link>> links;
  links.push_back(std::move(link));
  return std::unique_ptr<BlockDevice>(new VmdkDisk(std::move(links), std::move(below)));
}

}  // namespace vix::vmdk
