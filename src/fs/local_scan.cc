#include "fs/local_scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "vmdk/descriptor.h"

namespace vixfs {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxDescriptorBytes = 1 << 20;

bool ends_with_vmdk(const std::string& name) {
  if (name.size() <= 5) return false;
  std::string tail = name.substr(name.size() - 5);
  std::transform(tail.begin(), tail.end(), tail.begin(), ::tolower);
  return tail == ".vmdk";
}

uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool read_exact(int fd, void* buf, size_t n, off_t off) {
  ssize_t r = pread(fd, buf, n, off);
  return r >= 0 && static_cast<size_t>(r) == n;
}

// The descriptor text of a disk, or nullopt with *why set when the file is not a disk.
std::optional<std::string> descriptor_text(const std::string& path, std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = std::string("cannot open: ") + strerror(errno);
    return std::nullopt;
  }
  struct FdGuard {
    int fd;
    ~FdGuard() { ::close(fd); }
  } guard{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = "not a regular file";
    return std::nullopt;
  }
  uint8_t header[512] = {};
  size_t head = static_cast<size_t>(std::min<off_t>(st.st_size, sizeof header));
  if (!read_exact(fd, header, head, 0)) {
    *why = "cannot read its first sector";
    return std::nullopt;
  }
  if (head >= 44 && memcmp(header, "KDMV", 4) == 0) {
    uint64_t desc_off = le64(header + 28), desc_size = le64(header + 36);
    if (desc_off == 0 || desc_size == 0) {
      *why = "a sparse extent without a descriptor";
      return std::nullopt;
    }
    if (desc_size > kMaxDescriptorBytes / 512 || desc_off > (uint64_t{1} << 40)) {
      // Shown anyway: opening it gives the library's own error, logged on read.
      return std::string();
    }
    std::string text(desc_size * 512, '\0');
    if (!read_exact(fd, text.data(), text.size(), static_cast<off_t>(desc_off * 512))) {
      return std::string();
    }
    text.resize(strnlen(text.data(), text.size()));
    return text;
  }
  if (head >= 4 && memcmp(header, "COWD", 4) == 0) {
    *why = "an ESX sparse extent";
    return std::nullopt;
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxDescriptorBytes) {
    *why = "no descriptor (a flat extent)";
    return std::nullopt;
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  if (!read_exact(fd, text.data(), text.size(), 0)) {
    *why = "cannot read it";
    return std::nullopt;
  }
  if (text.find("createType") == std::string::npos) {
    *why = "no descriptor (no createType)";
    return std::nullopt;
  }
  return text;
}

std::string normal(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return ec ? p.lexically_normal().string() : c.string();
}

}  // namespace

vix::Result<std::vector<LocalDisk>> scan_local(const std::string& path,
                                               std::vector<std::string>* notes) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec) return vix::fail(VIX_E_FILE_NOT_FOUND, path + ": " + ec.message());
  std::vector<fs::path> candidates;
  const bool single = fs::is_regular_file(status);
  if (single) {
    candidates.push_back(path);
  } else if (fs::is_directory(status)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      std::string name = entry.path().filename().string();
      if (ends_with_vmdk(name) && entry.is_regular_file(ec)) candidates.push_back(entry.path());
    }
    if (ec) return vix::fail(VIX_E_FILE_ACCESS_ERROR, path + ": " + ec.message());
  } else {
    return vix::fail(VIX_E_INVALID_ARG, path + ": neither a .vmdk file nor a folder");
  }
  std::sort(candidates.begin(), candidates.end());

  std::map<std::string, fs::path> disks;  // normalised path -> path
  std::set<std::string> referenced;       // extents and parents of other disks
  for (const fs::path& p : candidates) {
    std::string why;
    std::optional<std::string> text = descriptor_text(p.string(), &why);
    if (!text) {
      if (!single) {
        notes->push_back(p.filename().string() + ": left out, " + why);
        continue;
      }
      return vix::fail(VIX_E_DISK_INVAL, p.string() + ": not a disk, " + why);
    }
    const std::string self = normal(p);
    disks[self] = p;
    auto desc = vix::vmdk::Descriptor::parse(*text, p.string());
    if (!desc.ok()) continue;  // opening it will say what is wrong; it stays visible
    const fs::path dir = p.parent_path();
    for (const auto& extent : desc->extents) {
      if (extent.file.empty()) continue;
      std::string e = normal(dir / extent.file);
      if (e != self) referenced.insert(e);
    }
    if (!desc->parent_file_name_hint.empty()) {
      referenced.insert(normal(dir / desc->parent_file_name_hint));
    }
  }

  std::vector<LocalDisk> out;
  for (const auto& [key, p] : disks) {
    std::string name = p.filename().string();
    if (!single && referenced.count(key)) {
      notes->push_back(name + ": left out, an extent or parent of another disk");
      continue;
    }
    LocalDisk d;
    d.name = ends_with_vmdk(name) ? name.substr(0, name.size() - 5) : name;
    d.path = p.string();
    struct stat st {};
    if (::stat(d.path.c_str(), &st) == 0) d.mtime = st.st_mtim;
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace vixfs
