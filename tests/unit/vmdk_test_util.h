// Helpers shared by the VMDK engine tests: random qemu-io pattern writes (fixed seeds), reading
// a whole disk through vmdk::open, and the qemu-img oracle for windows of large disks.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "vmdk/vmdk.h"

namespace vmdktest {

struct Pattern {
  uint64_t off = 0, len = 0;
  int byte = 0;
};

// n writes at unaligned offsets in [lo, hi), each up to max_len bytes.
inline std::vector<Pattern> random_patterns(uint64_t lo, uint64_t hi, int n, uint32_t seed,
                                            uint64_t max_len = 200000) {
  std::mt19937_64 rng(seed);
  std::vector<Pattern> out;
  for (int i = 0; i < n; ++i) {
    Pattern p;
    p.len = 1 + rng() % max_len;
    if (p.len > hi - lo) p.len = hi - lo;
    p.off = lo + rng() % (hi - lo - p.len + 1);
    p.byte = 1 + static_cast<int>(rng() % 254);
    out.push_back(p);
  }
  return out;
}

inline std::string qemu_io_writes(const std::vector<Pattern>& ps) {
  std::string cmd;
  for (const auto& p : ps) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " -c 'write -P 0x%02x %llu %llu'", p.byte,
                  static_cast<unsigned long long>(p.off), static_cast<unsigned long long>(p.len));
    cmd += buf;
  }
  return cmd;
}

inline void qemu_write(const std::string& img, const std::vector<Pattern>& ps) {
  // Batches keep the command line short.
  for (size_t i = 0; i < ps.size(); i += 50) {
    std::vector<Pattern> part(ps.begin() + i, ps.begin() + std::min(ps.size(), i + 50));
    vixtest::run_ok("qemu-io -f vmdk" + qemu_io_writes(part) + " " + vixtest::sh_quote(img));
  }
}

inline void apply(std::vector<uint8_t>& img, const std::vector<Pattern>& ps) {
  for (const auto& p : ps)
    for (uint64_t i = 0; i < p.len && p.off + i < img.size(); ++i) img[p.off + i] = p.byte;
}

inline std::unique_ptr<vix::BlockDevice> open_disk(const std::string& path, bool read_only = true,
                                                   bool single_link = false) {
  auto opener = vix::make_local_opener();
  vix::vmdk::OpenOptions o;
  o.read_only = read_only;
  o.single_link = single_link;
  auto r = vix::vmdk::open(*opener, path, o);
  if (!r.ok()) {
    ADD_FAILURE() << "open " << path << ": " << r.error().message;
    return nullptr;
  }
  return std::move(*r);
}

// The whole disk through the engine, in requests of chunk sectors.
inline std::vector<uint8_t> engine_read_all(vix::BlockDevice& d, uint64_t chunk = 2048) {
  std::vector<uint8_t> out(d.capacity_sectors() * 512);
  for (uint64_t s = 0; s < d.capacity_sectors(); s += chunk) {
    uint64_t n = std::min(chunk, d.capacity_sectors() - s);
    auto r = d.read(s, n, out.data() + s * 512);
    if (!r.ok()) {
      ADD_FAILURE() << "read " << s << ": " << r.error().message;
      break;
    }
  }
  return out;
}

// qemu-img convert to a raw file; windows are read from it (for disks too big for memory).
class RawOracle {
 public:
  explicit RawOracle(const std::string& image) : raw_(image + ".oracle.raw") {
    vixtest::run_ok("qemu-img convert -f vmdk -O raw " + vixtest::sh_quote(image) + " " +
                    vixtest::sh_quote(raw_));
  }
  ~RawOracle() { std::remove(raw_.c_str()); }
  std::vector<uint8_t> window(uint64_t off, uint64_t len) const {
    std::vector<uint8_t> out(len, 0);
    std::ifstream in(raw_, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(off));
    in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(len));
    return out;
  }

 private:
  std::string raw_;
};

// qemu-img map --output=json data:true ranges as sector extents, merged and rounded to grains.
inline std::vector<vix::SectorExtent> qemu_map(const std::string& image, uint64_t grain_sectors) {
  std::string json =
      vixtest::run_ok("qemu-img map -f vmdk --output=json " + vixtest::sh_quote(image));
  std::vector<vix::SectorExtent> out;
  auto num = [&](size_t from, const char* key) -> uint64_t {
    size_t k = json.find(key, from);
    return std::stoull(json.substr(k + std::string(key).size()));
  };
  for (size_t pos = json.find('{'); pos != std::string::npos; pos = json.find('{', pos + 1)) {
    size_t end = json.find('}', pos);
    std::string entry = json.substr(pos, end - pos);
    if (entry.find("\"data\": true") == std::string::npos) continue;
    uint64_t start = num(pos, "\"start\": ") / 512, len = num(pos, "\"length\": ") / 512;
    uint64_t s = start / grain_sectors * grain_sectors;
    uint64_t e = (start + len + grain_sectors - 1) / grain_sectors * grain_sectors;
    if (!out.empty() && out.back().start + out.back().count >= s) {
      out.back().count = std::max(out.back().start + out.back().count, e) - out.back().start;
    } else {
      out.push_back({s, e - s});
    }
  }
  return out;
}

inline void expect_same(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  if (got == want) return;
  size_t i = 0;
  while (got[i] == want[i]) ++i;
  ADD_FAILURE() << what << ": first difference at byte " << i << " (got " << int(got[i])
                << ", want " << int(want[i]) << ")";
}

}  // namespace vmdktest
