// In-memory files for fuzz targets: a ByteSource over a byte vector and a SourceOpener over a
// name -> bytes map, so a fuzzer never touches real files. Read-only by design: writes, creates,
// removes and renames fail with VIX_E_FILE_READ_ONLY.
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/byte_source.h"

namespace vixfuzz {

class MemorySource final : public vix::ByteSource {
 public:
  MemorySource(std::shared_ptr<const std::vector<uint8_t>> data, std::string name)
      : data_(std::move(data)), name_(std::move(name)) {}

  vix::Result<size_t> pread(void* buf, size_t len, uint64_t off) override {
    if (off >= data_->size()) return size_t{0};
    size_t n = std::min<uint64_t>(len, data_->size() - off);
    std::memcpy(buf, data_->data() + off, n);
    return n;
  }
  vix::Result<size_t> pwrite(const void*, size_t, uint64_t) override { return read_only(); }
  vix::Result<uint64_t> size() override { return uint64_t{data_->size()}; }
  vix::Result<void> flush() override { return vix::ok(); }
  vix::Result<void> truncate(uint64_t) override { return read_only(); }
  bool writable() const override { return false; }
  const std::string& name() const override { return name_; }

 private:
  vix::Error read_only() const { return vix::fail(VIX_E_FILE_READ_ONLY, name_ + ": in memory"); }
  std::shared_ptr<const std::vector<uint8_t>> data_;
  std::string name_;
};

class MemoryOpener final : public vix::SourceOpener {
 public:
  void add(const std::string& name, std::vector<uint8_t> bytes) {
    files_[name] = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  }

  vix::Result<std::unique_ptr<vix::ByteSource>> open(const std::string& path,
                                                     vix::OpenMode mode) override {
    auto it = files_.find(normalize(path));
    if (it == files_.end()) return vix::fail(VIX_E_FILE_NOT_FOUND, path + ": no such file");
    if (mode.writable) return vix::fail(VIX_E_FILE_READ_ONLY, path + ": in memory");
    return std::unique_ptr<vix::ByteSource>(new MemorySource(it->second, path));
  }
  vix::Result<std::unique_ptr<vix::ByteSource>> create(const std::string& path, bool) override {
    return vix::fail(VIX_E_FILE_READ_ONLY, path + ": in memory");
  }
  vix::Result<void> remove(const std::string& path) override {
    return vix::fail(VIX_E_FILE_READ_ONLY, path + ": in memory");
  }
  vix::Result<void> rename(const std::string& from, const std::string&) override {
    return vix::fail(VIX_E_FILE_READ_ONLY, from + ": in memory");
  }
  // Everything lives in one flat folder: only the last path component of a name counts.
  std::string resolve(const std::string&, const std::string& relative) const override {
    return relative;
  }

 private:
  static std::string normalize(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
  }
  std::map<std::string, std::shared_ptr<const std::vector<uint8_t>>> files_;
};

}  // namespace vixfuzz
