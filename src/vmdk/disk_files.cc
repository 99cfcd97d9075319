#include "vmdk/disk_files.h"

#include "common/endian.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "vmdk/descriptor.h"

namespace vix::vmdk {

namespace {

constexpr uint64_t kMaxDescriptorBytes = 1 << 20;
// The hosted sparse header fields that locate the embedded descriptor
// (docs/reference/vmdk-format.md §3).
constexpr size_t kHeaderBytes = 512;
constexpr size_t kDescriptorOffsetField = 28, kDescriptorSizeField = 36;

// Paths that name the same file compare equal ("./a.vmdk" and "a.vmdk").
std::string same_file_key(const std::string& path) {
  std::error_code ec;
  std::filesystem::path c = std::filesystem::weakly_canonical(path, ec);
  return ec ? std::filesystem::path(path).lexically_normal().string() : c.string();
}

Error not_a_disk(const std::string& path, const std::string& what) {
  return fail(VIX_E_DISK_INVALIDDISK, path + ": not the first file of a disk: " + what);
}

}  // namespace

Result<DiskFiles> disk_files(SourceOpener& opener, const std::string& path) {
  VIX_ASSIGN_OR_RETURN(auto src, opener.open(path, OpenMode{}));
  VIX_ASSIGN_OR_RETURN(uint64_t size, src->size());
  uint8_t header[kHeaderBytes] = {};
  const size_t head = static_cast<size_t>(std::min<uint64_t>(size, sizeof header));
  VIX_TRY(src->read_exact(header, head, 0, "first sector"));

  DiskFiles out;
  out.files.push_back(path);
  std::string text;
  // COWD, or SEsparse (const header magic 0xcafebabe, u64 LE): extents of a vmfsSparse or
  // seSparse disk, whose text descriptor names them.
  static constexpr uint8_t kSeSparseMagic[8] = {0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0};
  if ((head >= 4 && memcmp(header, "COWD", 4) == 0) ||
      (head >= 8 && memcmp(header, kSeSparseMagic, 8) == 0)) {
    out.kind = DiskFiles::Kind::kEsxSparse;
    return out;
  }
  if (head >= kDescriptorSizeField + 8 && memcmp(header, "KDMV", 4) == 0) {
    out.kind = DiskFiles::Kind::kHostedSparse;
    const uint64_t sector = load_le64(header + kDescriptorOffsetField);
    const uint64_t sectors = load_le64(header + kDescriptorSizeField);
    if (sector == 0 || sectors == 0)
      return not_a_disk(path, "a sparse extent without a descriptor");
    if (sectors > kMaxDescriptorBytes / 512 || sector > size / 512) {
      out.descriptor_error =
          fail(VIX_E_DISK_INVAL, path + ": the embedded descriptor (" + std::to_string(sectors) +
                                     " sectors at " + std::to_string(sector) +
                                     ") lies outside the file or is too large");
      return out;
    }
    text.resize(sectors * 512);
    auto got = src->read_exact(text.data(), text.size(), sector * 512, "embedded descriptor");
    if (!got.ok()) {
      out.descriptor_error = got.error();
      return out;
    }
    text.resize(strnlen(text.data(), text.size()));
    // qemu reserves a descriptor area in the extents of a split disk and leaves it empty.
    if (text.empty()) return not_a_disk(path, "a sparse extent without a descriptor");
  } else {
    if (size > kMaxDescriptorBytes) {
      return not_a_disk(path, "no descriptor (larger than 1 MiB: a flat extent?)");
    }
    text.resize(size);
    VIX_TRY(src->read_exact(text.data(), text.size(), 0, "descriptor"));
    if (text.find("createType") == std::string::npos) {
      return not_a_disk(path, "no descriptor (no createType)");
    }
  }

  auto desc = Descriptor::parse(text, path);
  if (!desc.ok()) {
    out.descriptor_error = desc.error();
    return out;
  }
  const std::string self = same_file_key(path);
  std::vector<std::string> seen{self};
  for (const ExtentLine& e : desc->extents) {
    if (e.file.empty()) continue;
    std::string file = opener.resolve(path, e.file);
    std::string key = same_file_key(file);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(std::move(key));
    out.files.push_back(std::move(file));
  }
  if (!desc->parent_file_name_hint.empty()) {
    out.parent = opener.resolve(path, desc->parent_file_name_hint);
  }
  return out;
}

}  // namespace vix::vmdk
