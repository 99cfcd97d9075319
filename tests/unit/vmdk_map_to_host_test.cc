// VmdkDisk::map_to_host, the map the FUSE daemon splices replies from: its pieces, read from their
// files (zeros for fd -1), must be the bytes qemu-img reads, and a range that does not lie plainly
// in local files must map to nothing so that the caller reads it instead.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

#include "common/byte_source.h"
#include "support/fixtures.h"
#include "unit/vmdk_test_util.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vix/readahead.h"
#include "vmdk/vmdk.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;

namespace {

// What the pieces of [sector, sector+count) say the bytes are; fails the test on a bad piece.
std::vector<uint8_t> bytes_of(const std::vector<vix::HostPiece>& pieces) {
  std::vector<uint8_t> out;
  for (const auto& p : pieces) {
    EXPECT_GT(p.bytes, 0u);
    const size_t at = out.size();
    out.resize(at + p.bytes, 0);
    if (p.fd < 0) {
      if (p.mem) std::memcpy(out.data() + at, p.mem, p.bytes);
      continue;
    }
    ssize_t got = pread(p.fd, out.data() + at, p.bytes, static_cast<off_t>(p.offset));
    EXPECT_EQ(got, static_cast<ssize_t>(p.bytes)) << "piece at " << p.offset << " reaches past EOF";
  }
  return out;
}

// Maps the whole disk in requests of `chunk` sectors and compares with qemu-img's bytes.
void expect_maps_like_qemu(vix::BlockDevice& disk, const std::string& image, uint64_t chunk,
                           std::set<int>* fds = nullptr) {
  const std::vector<uint8_t> model = vixtest::qemu_raw(image);
  ASSERT_EQ(model.size(), disk.capacity_sectors() * 512);
  for (uint64_t s = 0; s < disk.capacity_sectors(); s += chunk) {
    const uint64_t n = std::min(chunk, disk.capacity_sectors() - s);
    std::vector<vix::HostPiece> pieces;
    auto mapped = disk.map_to_host(s, n, &pieces);
    ASSERT_TRUE(mapped.ok()) << mapped.error().message;
    ASSERT_TRUE(*mapped) << "sector " << s;
    const std::vector<uint8_t> got = bytes_of(pieces);
    ASSERT_EQ(got.size(), n * 512) << "sector " << s;
    ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + static_cast<long>(s * 512)))
        << "sectors " << s << "+" << n << " differ from qemu-img";
    if (fds)
      for (const auto& p : pieces)
        if (p.fd >= 0) fds->insert(p.fd);
  }
}

class MapToHost : public ::testing::Test {
 protected:
  // `qemu-img create OPTIONS img MiB`, then n random qemu-io writes.
  void make_patterned(const std::string& img, const std::string& options, uint64_t mib, int n,
                      uint32_t seed) {
    run_ok("qemu-img create -q -f vmdk " + options + " " + sh_quote(img) + " " +
           std::to_string(mib) + "M");
    vmdktest::qemu_write(img, vmdktest::random_patterns(0, mib << 20, n, seed));
  }
  TempDir dir_;
};

TEST_F(MapToHost, SparseAndFlatDisksMapToTheirDataAndZeros) {
  struct Case {
    const char* name;
    const char* options;
    uint64_t mib;
  };
  for (const Case& c :
       {Case{"sparse.vmdk", "", 32}, Case{"flat.vmdk", "-o subformat=monolithicFlat", 8}}) {
    const std::string img = dir_.file(c.name);
    make_patterned(img, c.options, c.mib, 40, 7);
    auto disk = vmdktest::open_disk(img);
    ASSERT_TRUE(disk) << c.name;
    expect_maps_like_qemu(*disk, img, 2048);
    expect_maps_like_qemu(*disk, img, 7);  // requests that cut grains
  }
}

TEST_F(MapToHost, DenseRangeIsOnePiece) {
  const std::string raw = dir_.file("dense.raw"), img = dir_.file("dense.vmdk");
  run_ok("head -c 4M /dev/urandom > " + sh_quote(raw));
  run_ok("qemu-img convert -f raw -O vmdk " + sh_quote(raw) + " " + sh_quote(img));
  auto disk = vmdktest::open_disk(img);
  ASSERT_TRUE(disk);
  std::vector<vix::HostPiece> pieces;
  auto mapped = disk->map_to_host(0, 2048, &pieces);
  ASSERT_TRUE(mapped.ok() && *mapped);
  // qemu-img writes a dense disk's grains in order: a 1 MiB read is one splice.
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].bytes, 1u << 20);
  expect_maps_like_qemu(*disk, img, 2048);
}

TEST_F(MapToHost, ChildMapsThroughItsParent) {
  const std::string base = dir_.file("base.vmdk"), child = dir_.file("child.vmdk");
  make_patterned(base, "", 16, 30, 11);
  make_patterned(child, "-b " + sh_quote(base) + " -F vmdk", 16, 30, 12);
  auto disk = vmdktest::open_disk(child);
  ASSERT_TRUE(disk);
  std::set<int> fds;
  expect_maps_like_qemu(*disk, child, 2048, &fds);
  EXPECT_EQ(fds.size(), 2u) << "pieces come from the child and from its parent";
}

TEST_F(MapToHost, CompressedGrainsDoNotMap) {
  const std::string raw = dir_.file("s.raw"), img = dir_.file("stream.vmdk");
  run_ok("head -c 2M /dev/urandom > " + sh_quote(raw));
  run_ok("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + sh_quote(raw) + " " +
         sh_quote(img));
  auto disk = vmdktest::open_disk(img);
  ASSERT_TRUE(disk);
  std::vector<vix::HostPiece> pieces{
      {-1, 0, 512, nullptr, nullptr}};  // something already there stays
  auto mapped = disk->map_to_host(0, 2048, &pieces);
  ASSERT_TRUE(mapped.ok()) << mapped.error().message;
  EXPECT_FALSE(*mapped);
  EXPECT_EQ(pieces.size(), 1u) << "a range that does not map appends nothing";
}

// A grain the table places past the end of a cut file reads as zeros (as in qemu); a splice
// there would come up short, so it must not map.
TEST_F(MapToHost, GrainPastEndOfFileDoesNotMap) {
  const std::string raw = dir_.file("d.raw"), img = dir_.file("cut.vmdk");
  run_ok("head -c 2M /dev/urandom > " + sh_quote(raw));
  run_ok("qemu-img convert -f raw -O vmdk " + sh_quote(raw) + " " + sh_quote(img));
  std::filesystem::resize_file(img, std::filesystem::file_size(img) - (512u << 10));
  auto disk = vmdktest::open_disk(img);
  ASSERT_TRUE(disk);
  std::vector<vix::HostPiece> pieces;
  auto mapped = disk->map_to_host(2048, 2048, &pieces);
  ASSERT_TRUE(mapped.ok()) << mapped.error().message;
  EXPECT_FALSE(*mapped);
  EXPECT_TRUE(pieces.empty());
  mapped = disk->map_to_host(0, 1024, &pieces);  // the first half MiB is still whole
  ASSERT_TRUE(mapped.ok() && *mapped);
}

TEST_F(MapToHost, OutOfRangeFails) {
  const std::string img = dir_.file("small.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(img) + " 1M");
  auto disk = vmdktest::open_disk(img);
  ASSERT_TRUE(disk);
  std::vector<vix::HostPiece> pieces;
  auto mapped = disk->map_to_host(2047, 2, &pieces);
  ASSERT_FALSE(mapped.ok());
  EXPECT_EQ(mapped.error().code, VIX_E_DISK_OUTOFRANGE);
}

// Through the library: the metered stack maps, and counts it as a transport read.
TEST_F(MapToHost, LibraryDiskMapsAndCountsTheRead) {
  const std::string img = dir_.file("lib.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(img) + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x42 0 1M' " + sh_quote(img));
  ASSERT_TRUE(vix::Library::init({}, "", "").ok());
  {
    auto conn = vix::Connection::connect({}, true, "", "file");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(img, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    std::vector<vix::HostPiece> pieces;
    auto mapped = (*disk)->map_to_host(0, 4096, &pieces);
    ASSERT_TRUE(mapped.ok()) << mapped.error().message;
    EXPECT_TRUE(*mapped);
    std::vector<uint8_t> model = vixtest::qemu_raw(img);
    model.resize(2u << 20);
    EXPECT_EQ(bytes_of(pieces), model) << "the 1 MiB written, then zeros";
    EXPECT_EQ((*disk)->transport_stats().read_bytes, 2u << 20);
    EXPECT_EQ((*disk)->transport_stats().read_requests, 1u);
  }
  vix::Library::exit();
}

// Under the read-ahead cache a range maps to the cache's chunks, kept alive by the pieces (a
// chunk evicted while a reply is written must not be freed under it); with no room in the budget
// the parts come in buffers of their own. Either way the bytes are qemu-img's.
TEST_F(MapToHost, ReadaheadMapsToItsChunks) {
  const std::string img = dir_.file("cached.vmdk");
  make_patterned(img, "", 8, 30, 9);
  const std::vector<uint8_t> model = vixtest::qemu_raw(img);
  for (uint64_t limit : {uint64_t{64} << 20, uint64_t{0}}) {
    auto budget = std::make_shared<vix::CacheBudget>(limit, 2);
    vix::ReadaheadOptions opt;
    opt.chunk_bytes = 256 << 10;
    vix::ReadaheadDevice dev(vmdktest::open_disk(img), opt, budget);
    for (uint64_t s = 0; s < dev.capacity_sectors(); s += 700) {
      const uint64_t n = std::min<uint64_t>(700, dev.capacity_sectors() - s);
      std::vector<vix::HostPiece> pieces;
      auto mapped = dev.map_to_host(s, n, &pieces);
      ASSERT_TRUE(mapped.ok()) << mapped.error().message;
      ASSERT_TRUE(*mapped);
      for (const auto& p : pieces) {
        EXPECT_EQ(p.fd, -1);
        EXPECT_NE(p.mem, nullptr);
        EXPECT_TRUE(p.keep) << "a memory piece keeps its buffer";
      }
      const std::vector<uint8_t> got = bytes_of(pieces);
      ASSERT_EQ(got.size(), n * 512);
      ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + static_cast<long>(s * 512)))
          << "sectors " << s << "+" << n << " with a budget of " << limit;
    }
    const vix::ReadaheadStats st = dev.snapshot();
    if (limit == 0) {
      EXPECT_GT(st.bypass_reads, 0u);
    } else {
      EXPECT_GT(st.hits, 0u);
    }
  }
}

// A file opened O_DIRECT offers no descriptor to splice from: that would go through the page
// cache its opener asked to bypass.
TEST_F(MapToHost, DirectFilesOfferNoDescriptor) {
  const std::string f = dir_.file("f.bin");
  run_ok("head -c 64k /dev/zero > " + sh_quote(f));
  auto opener = vix::make_local_opener();
  auto buffered = opener->open(f, vix::OpenMode{});
  ASSERT_TRUE(buffered.ok());
  EXPECT_GE((*buffered)->fd(), 0);
  vix::OpenMode direct;
  direct.direct = true;
  auto unbuffered = opener->open(f, direct);
  ASSERT_TRUE(unbuffered.ok());
  // The opener falls back to buffered I/O where the file system refuses O_DIRECT.
  const int probe = open(f.c_str(), O_RDONLY | O_DIRECT);
  if (probe >= 0) close(probe);
  EXPECT_EQ((*unbuffered)->fd() >= 0, probe < 0);
}

}  // namespace
