#include "fs/local_scan.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "common/byte_source.h"
#include "vmdk/disk_files.h"

namespace vixfs {
namespace {

namespace fs = std::filesystem;

bool ends_with_vmdk(const std::string& name) {
  if (name.size() <= 5) return false;
  std::string tail = name.substr(name.size() - 5);
  std::transform(tail.begin(), tail.end(), tail.begin(), ::tolower);
  return tail == ".vmdk";
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
  auto opener = vix::make_local_opener();
  for (const fs::path& p : candidates) {
    auto files = vix::vmdk::disk_files(*opener, p.string());
    std::string why;  // why p is not a disk, without the path the messages start with
    if (!files.ok()) {
      why = files.error().message;
      if (why.rfind(p.string() + ": ", 0) == 0) why.erase(0, p.string().size() + 2);
    } else if (files->kind == vix::vmdk::DiskFiles::Kind::kEsxSparse) {
      why = "an ESX sparse extent";
    }
    if (!why.empty()) {
      if (!single) {
        notes->push_back(p.filename().string() + ": left out, " + why);
        continue;
      }
      return vix::fail(VIX_E_DISK_INVAL, p.string() + ": " + why);
    }
    const std::string self = normal(p);
    disks[self] = p;
    // A disk whose descriptor is corrupt stays visible: opening it says what is wrong.
    for (size_t i = 1; i < files->files.size(); ++i) referenced.insert(normal(files->files[i]));
    if (!files->parent.empty()) referenced.insert(normal(files->parent));
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
