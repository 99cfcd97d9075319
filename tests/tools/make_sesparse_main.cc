// vixfs-make-sesparse: an SEsparse snapshot delta (ESXi 6.5+/VMFS6, vmdk-format.md §9) from two
// raw images, for scripts/sample-vms. It compares OLD (what the parent reads) with NEW (what the
// child must read) grain by grain (4 KiB) and writes, through support/sesparse_writer, a child
// holding a data grain where NEW differs from OLD, a zero grain (GTE kind 2) where NEW is all
// zero but OLD was not, and nothing where they agree. Holes both files share are skipped
// (SEEK_DATA), so a 1 GiB sparse pair costs what its data costs.
//
//   vixfs-make-sesparse [--parent HINT --parent-cid HEX] [--cid HEX] --old OLD.raw --new NEW.raw
//                       DIR NAME
//
// writes DIR/NAME.vmdk (descriptor, createType "seSparse") and DIR/NAME-sesparse.vmdk. The
// capacity is NEW's size (a multiple of 512); OLD past its end reads as zeros. Exit 0 on
// success, 1 on an I/O error, 2 on bad arguments, each with a message on stderr.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/sesparse_writer.h"

namespace {

constexpr uint64_t kGrain = 4096;
constexpr uint64_t kChunk = 1 << 20;

const char kUsage[] =
    "usage: vixfs-make-sesparse [--parent HINT --parent-cid HEX] [--cid HEX] --old OLD.raw "
    "--new NEW.raw DIR NAME\n";

int usage(const std::string& why) {
  std::fprintf(stderr, "vixfs-make-sesparse: %s\n%s", why.c_str(), kUsage);
  return 2;
}

bool parse_cid(const char* text, uint32_t* out) {
  if (!*text) return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 16);
  if (errno || *end || v > 0xffffffffull) return false;
  *out = uint32_t(v);
  return true;
}

struct RawFile {
  std::string path;
  int fd = -1;
  uint64_t size = 0;
  ~RawFile() {
    if (fd >= 0) ::close(fd);
  }
  std::string open_it() {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) return path + ": " + std::strerror(errno);
    if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
    size = uint64_t(st.st_size);
    return "";
  }
  // The first offset >= at that may hold data (size when none).
  uint64_t next_data(uint64_t at) const {
    if (at >= size) return size;
    const off_t d = ::lseek(fd, off_t(at), SEEK_DATA);
    if (d < 0) return errno == ENXIO ? size : at;  // no SEEK_DATA here: read everything
    return uint64_t(d);
  }
  // Reads n bytes at off into buf; zeros past the end of the file.
  std::string read_at(uint8_t* buf, uint64_t n, uint64_t off) const {
    std::memset(buf, 0, n);
    const uint64_t have = off >= size ? 0 : std::min(n, size - off);
    for (uint64_t done = 0; done < have;) {
      const ssize_t r = ::pread(fd, buf + done, have - done, off_t(off + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0)
        return path + ": read at " + std::to_string(off + done) + ": " + std::strerror(errno);
      if (r == 0) return path + ": shorter than its size while reading";
      done += uint64_t(r);
    }
    return "";
  }
};

bool all_zero(const uint8_t* p, uint64_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

}  // namespace

int main(int argc, char** argv) {
  vixtest::SeSparseSpec spec;
  spec.cid = 0x5e5e0001;
  RawFile old_raw, new_raw;
  std::vector<std::string> positional;
  bool have_parent_cid = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      if (i + 1 >= argc) return usage(a + " needs a value");
      const char* v = argv[++i];
      if (a == "--parent") {
        if (!*v) return usage("--parent: empty hint");
        spec.parent_hint = v;
      } else if (a == "--parent-cid") {
        if (!parse_cid(v, &spec.parent_cid))
          return usage(std::string("--parent-cid ") + v + ": expected 1..8 hex digits");
        have_parent_cid = true;
      } else if (a == "--cid") {
        if (!parse_cid(v, &spec.cid))
          return usage(std::string("--cid ") + v + ": expected 1..8 hex digits");
      } else if (a == "--old") {
        old_raw.path = v;
      } else if (a == "--new") {
        new_raw.path = v;
      } else {
        return usage("unknown option " + a);
      }
      continue;
    }
    positional.push_back(a);
  }
  if (positional.size() != 2) return usage("want DIR and NAME");
  if (old_raw.path.empty() || new_raw.path.empty()) return usage("--old and --new are required");
  if (spec.parent_hint.empty() != !have_parent_cid)
    return usage("--parent and --parent-cid go together");
  const std::string& dir = positional[0];
  const std::string& name = positional[1];
  if (name.empty() || name.find('/') != std::string::npos)
    return usage("NAME " + name + ": a file name without a folder or .vmdk");

  for (RawFile* f : {&old_raw, &new_raw}) {
    if (std::string err = f->open_it(); !err.empty()) {
      std::fprintf(stderr, "vixfs-make-sesparse: %s\n", err.c_str());
      return 1;
    }
  }
  if (new_raw.size == 0 || new_raw.size % 512)
    return usage(new_raw.path + ": size " + std::to_string(new_raw.size) +
                 " is not a positive multiple of 512");
  spec.capacity_sectors = new_raw.size / 512;

  std::vector<uint8_t> was(kChunk), now(kChunk);
  uint64_t data_grains = 0, zero_grains = 0;
  for (uint64_t at = 0; at < new_raw.size;) {
    const uint64_t next = std::min(old_raw.next_data(at), new_raw.next_data(at));
    if (next >= new_raw.size) break;
    at = next / kGrain * kGrain;
    const uint64_t n = std::min(kChunk, new_raw.size - at);
    for (RawFile* f : {&old_raw, &new_raw}) {
      if (std::string err = f->read_at(f == &old_raw ? was.data() : now.data(), n, at);
          !err.empty()) {
        std::fprintf(stderr, "vixfs-make-sesparse: %s\n", err.c_str());
        return 1;
      }
    }
    for (uint64_t g = 0; g < n; g += kGrain) {
      const uint64_t len = std::min(kGrain, n - g);
      if (std::memcmp(was.data() + g, now.data() + g, len) == 0) continue;
      auto& w = spec.writes;
      if (all_zero(now.data() + g, len) && len == kGrain) {
        // A zero grain: the parent's bytes must not show through.
        if (!w.empty() && w.back().kind == vixtest::SeSparseWrite::Kind::kZero &&
            w.back().offset + w.back().length == at + g) {
          w.back().length += kGrain;
        } else {
          w.push_back({at + g, vixtest::SeSparseWrite::Kind::kZero, {}, kGrain});
        }
        ++zero_grains;
        continue;
      }
      if (!w.empty() && w.back().kind == vixtest::SeSparseWrite::Kind::kData &&
          w.back().offset + w.back().bytes.size() == at + g) {
        w.back().bytes.insert(w.back().bytes.end(), now.begin() + g, now.begin() + g + len);
      } else {
        w.push_back({at + g, vixtest::SeSparseWrite::Kind::kData,
                     std::vector<uint8_t>(now.begin() + g, now.begin() + g + len), 0});
      }
      ++data_grains;
    }
    at += n;
  }

  if (std::string err = vixtest::write_sesparse(dir, name, spec); !err.empty()) {
    std::fprintf(stderr, "vixfs-make-sesparse: %s/%s.vmdk: %s\n", dir.c_str(), name.c_str(),
                 err.c_str());
    return 1;
  }
  std::printf("%s/%s.vmdk: %llu data grains, %llu zero grains\n", dir.c_str(), name.c_str(),
              static_cast<unsigned long long>(data_grains),
              static_cast<unsigned long long>(zero_grains));
  return 0;
}
