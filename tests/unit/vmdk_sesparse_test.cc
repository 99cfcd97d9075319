// SEsparse (ESXi snapshot deltas, docs/reference/vmdk-format.md §9), read-only. The fixtures come
// from tests/support/sesparse_writer; qemu-img reads every one of them independently and is the
// oracle, so a fact misread by the writer or the engine shows up as a mismatch.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "support/sesparse_writer.h"
#include "unit/vmdk_test_util.h"
#include "vmdk/disk_files.h"
#include "vmdk/sparse_layout.h"
#include "vmdk/vmdk.h"

using vixtest::run_ok;
using vixtest::SeSparseSpec;
using vixtest::SeSparseWrite;
using vixtest::sh_quote;
using vixtest::TempDir;
using namespace vmdktest;

namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGrain = 4096;

std::vector<uint8_t> noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng() | 1);  // never zero: a zero grain must not look like data
  return v;
}

SeSparseWrite data(uint64_t off, size_t len, uint32_t seed) {
  return SeSparseWrite{off, SeSparseWrite::Kind::kData, noise(len, seed), 0};
}
SeSparseWrite zeros(uint64_t off, uint64_t len) {
  return SeSparseWrite{off, SeSparseWrite::Kind::kZero, {}, len};
}
SeSparseWrite unmapped(uint64_t off, uint64_t len) {
  return SeSparseWrite{off, SeSparseWrite::Kind::kUnmapped, {}, len};
}

std::string make(const TempDir& dir, const std::string& name, const SeSparseSpec& spec) {
  std::string err = vixtest::write_sesparse(dir.path(), name, spec);
  EXPECT_EQ(err, "");
  return dir.file(name + ".vmdk");
}

// The CID= of a qemu-made disk (embedded or separate descriptor).
uint32_t cid_of(const std::string& path) {
  auto bytes = vixtest::read_file(path);
  std::string text(bytes.begin(), bytes.begin() + std::min<size_t>(bytes.size(), 65536));
  size_t p = text.find("\nCID=");
  EXPECT_NE(p, std::string::npos) << path;
  return p == std::string::npos ? 0 : uint32_t(std::stoul(text.substr(p + 5), nullptr, 16));
}

// qemu opens it, and the engine reads it as qemu does in several request sizes.
std::vector<uint8_t> check_like_qemu(const std::string& img) {
  run_ok("qemu-img info " + sh_quote(img));
  auto want = vixtest::qemu_raw(img);
  auto disk = open_disk(img);
  EXPECT_TRUE(disk);
  if (!disk) return want;
  EXPECT_EQ(disk->capacity_sectors() * 512, want.size());
  for (uint64_t chunk : {2048u, 7u, 13u}) {
    expect_same(engine_read_all(*disk, chunk), want, img + " in " + std::to_string(chunk));
  }
  return want;
}

SeSparseSpec all_kinds_spec() {
  SeSparseSpec s;
  s.capacity_sectors = 40 * kMiB / 512 + 3;  // a partial last grain
  s.first_cluster = 5000;                    // cluster numbers above 4095
  s.writes = {data(0, 3 * kGrain, 1),
              data(5 * kGrain + 100, 5000, 2),          // partial grains
              data(16 * kMiB - kGrain, 2 * kGrain, 3),  // across the first grain table
              zeros(64 * kGrain, 4 * kGrain),
              unmapped(80 * kGrain, 2 * kGrain),
              data(81 * kGrain, kGrain, 4),     // data over an unmapped grain
              zeros(1 * kGrain, kGrain),        // a zero grain over data
              data(40 * kMiB - 512, 1536, 5)};  // the partial last grain
  return s;
}

}  // namespace

TEST(VmdkSesparse, EveryGrainKindReadsLikeQemu) {
  TempDir dir;
  std::string img = make(dir, "vm-000001", all_kinds_spec());
  auto want = check_like_qemu(img);
  EXPECT_EQ(want[5 * kGrain + 99], 0);
  EXPECT_NE(want[5 * kGrain + 100], 0);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->info().create_type, "seSparse");
  // Zero and unmapped grains are not allocated; holes without a parent neither.
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok()) << alloc.error().message;
  std::vector<vix::SectorExtent> expect{{0, 8},   {16, 8},     {40, 16},
                                        {648, 8}, {32760, 16}, {81912, 11}};
  EXPECT_EQ(*alloc, expect);
}

TEST(VmdkSesparse, OddReadsAcrossGrainBoundaries) {
  TempDir dir;
  std::string img = make(dir, "d", all_kinds_spec());
  auto want = vixtest::qemu_raw(img);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; ++i) {
    uint64_t n = 1 + rng() % 40, s = rng() % (disk->capacity_sectors() - n + 1);
    if (i < 30) s = 32768 - 20 + rng() % 40;  // around the grain-table boundary
    std::vector<uint8_t> buf(n * 512);
    ASSERT_TRUE(disk->read(s, n, buf.data()).ok());
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), want.begin() + s * 512)) << s << "+" << n;
  }
}

// base monolithicSparse -> SEsparse -> SEsparse: unallocated grains fall through two levels,
// zero and unmapped grains hide the parent's data.
TEST(VmdkSesparse, ChainOverMonolithicSparse) {
  TempDir dir;
  const uint64_t size = 24 * kMiB;
  std::string base = dir.file("base.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " " + std::to_string(size));
  run_ok("qemu-io -f vmdk -c 'write -P 0xaa 0 24M' " + sh_quote(base));
  SeSparseSpec mid;
  mid.capacity_sectors = size / 512;
  mid.parent_hint = "base.vmdk";
  mid.parent_cid = cid_of(base);
  mid.cid = 0x11110001;
  mid.writes = {data(kMiB, 64 * kGrain, 11), zeros(4 * kMiB, 16 * kGrain),
                unmapped(6 * kMiB, 16 * kGrain), data(17 * kMiB + 3, 9000, 12)};
  make(dir, "mid", mid);
  SeSparseSpec leaf;
  leaf.capacity_sectors = size / 512;
  leaf.parent_hint = "mid.vmdk";
  leaf.parent_cid = mid.cid;
  leaf.writes = {data(kMiB + 8 * kGrain, 4 * kGrain, 21), zeros(kMiB + 32 * kGrain, 4 * kGrain),
                 data(4 * kMiB + kGrain, 100, 22), unmapped(20 * kMiB, 8 * kGrain)};
  std::string img = make(dir, "leaf", leaf);
  auto want = check_like_qemu(img);
  EXPECT_EQ(want[0], 0xaa);                     // two levels down
  EXPECT_EQ(want[4 * kMiB], 0);                 // mid's zero grain over base data
  EXPECT_EQ(want[6 * kMiB + 5], 0);             // mid's unmapped grain
  EXPECT_EQ(want[20 * kMiB], 0);                // leaf's unmapped grain
  EXPECT_EQ(want[4 * kMiB + kGrain + 100], 0);  // leaf's partial grain over a zero grain
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->info().num_links, 3);
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok()) << alloc.error().message;
  // Allocated: base everywhere, minus what a zero or unmapped grain above it hides.
  std::vector<uint64_t> want_alloc(size / 512, 1), got_alloc(size / 512, 0);
  auto mark = [&](uint64_t off, uint64_t len, uint64_t v) {
    for (uint64_t s = off / 512; s < (off + len) / 512; ++s) want_alloc[s] = v;
  };
  mark(4 * kMiB, 16 * kGrain, 0), mark(6 * kMiB, 16 * kGrain, 0);  // mid
  mark(4 * kMiB + kGrain, kGrain, 1);                              // leaf's data grain
  mark(kMiB + 32 * kGrain, 4 * kGrain, 0), mark(20 * kMiB, 8 * kGrain, 0);
  for (const auto& e : *alloc)
    for (uint64_t s = e.start; s < e.start + e.count; ++s) got_alloc[s] = 1;
  EXPECT_EQ(got_alloc, want_alloc);
}

TEST(VmdkSesparse, FlatBase) {
  TempDir dir;
  std::string base = dir.file("flat.vmdk");
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(base) + " 20M");
  qemu_write(base, random_patterns(0, 20 * kMiB, 30, 31));
  SeSparseSpec s;
  s.capacity_sectors = 20 * kMiB / 512;
  s.parent_hint = "flat.vmdk";
  s.parent_cid = cid_of(base);
  s.writes = {data(3 * kMiB + 7, 70000, 32), zeros(8 * kMiB, 64 * kGrain),
              unmapped(12 * kMiB, 3 * kGrain)};
  check_like_qemu(make(dir, "snap", s));
}

TEST(VmdkSesparse, StaleParentCidFails) {
  TempDir dir;
  std::string base = dir.file("base.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 1M");
  // Base data, so that qemu has to read through the parent (an empty one it skips unread).
  run_ok("qemu-io -f vmdk -c 'write -P 0xaa 0 4k' " + sh_quote(base));
  SeSparseSpec s;
  s.capacity_sectors = 2048;
  s.parent_hint = "base.vmdk";
  s.parent_cid = cid_of(base) ^ 1;
  std::string img = make(dir, "snap", s);
  EXPECT_NE(
      vixtest::run("qemu-img convert -O raw " + sh_quote(img) + " " + sh_quote(dir.file("x.raw")))
          .exit_code,
      0);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(512);
  auto r = disk->read(0, 1, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_DISK_CID_MISMATCH);
}

TEST(VmdkSesparse, WritesAreRefused) {
  TempDir dir;
  std::string img = make(dir, "vm-000001", all_kinds_spec());
  auto before = vixtest::read_file(dir.file("vm-000001-sesparse.vmdk"));
  auto disk = open_disk(img, /*read_only=*/false);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(4096, 0x5a);
  auto r = disk->write(0, 8, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_NE(r.error().message.find("SEsparse extents are read-only"), std::string::npos);
  EXPECT_EQ(vixtest::read_file(dir.file("vm-000001-sesparse.vmdk")), before);
}

TEST(VmdkSesparse, ExtentFileAloneAndDiskFiles) {
  TempDir dir;
  std::string img = make(dir, "vm-000001", all_kinds_spec());
  std::string ext = dir.file("vm-000001-sesparse.vmdk");
  auto opener = vix::make_local_opener();
  auto r = vix::vmdk::open(*opener, ext, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_DISK_NOTSUPPORTED);
  auto files = vix::vmdk::disk_files(*opener, img);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_EQ(files->files, (std::vector<std::string>{img, ext}));
  auto extent_files = vix::vmdk::disk_files(*opener, ext);
  ASSERT_TRUE(extent_files.ok());
  EXPECT_EQ(extent_files->kind, vix::vmdk::DiskFiles::Kind::kEsxSparse);
}

// Corrupt headers and tables: each an error naming the extent file and the field, from open or
// from the read that meets it; never a crash or wrong bytes.
TEST(VmdkSesparse, CorruptFilesGiveErrorsNamingTheField) {
  using namespace vixtest;
  struct Case {
    const char* what;
    uint64_t off;  // byte offset in the extent file (~0: set spec.dirty instead)
    uint64_t value;
    const char* field;
  };
  // Offsets follow the writer's layout: volatile header at sector 1, GD at sector 16, grain
  // tables at sector 24 (one GD sector for 40 MiB), table 0 holds GD entry 2 (written last).
  const uint64_t gt0 = 24 * 512;
  const Case cases[] = {
      {"magic", sesparse_field(kSesMagic), 0xcafebabf, "magic"},
      {"version", sesparse_field(kSesVersion), 0x100000001, "version"},
      {"grain size", sesparse_field(kSesGrainSize), 16, "grainSize"},
      {"table size", sesparse_field(kSesGrainTableSize), 128, "grainTableSize"},
      {"flags", sesparse_field(kSesFlags), 1, "flags"},
      {"reserved", sesparse_field(kSesReserved3), 1, "reserved3"},
      {"volatile past end", sesparse_field(kSesVolatileOffset), 1u << 30, "volatileHeaderOffset"},
      {"gd past end", sesparse_field(kSesGrainDirOffset), 1u << 30, "grainDirOffset"},
      {"gd too small", sesparse_field(kSesGrainDirSize), 0, "grainDirSize"},
      {"gts past end", sesparse_field(kSesGrainTablesOffset), 1u << 30, "grainTablesOffset"},
      {"volatile magic", 512, 0xcafecafd, "volatile header: magic"},
      {"dirty", ~uint64_t{0}, 0, "replayJournal"},
      {"gd tag", 16 * 512, 0x2000000000000000, "grain directory entry 0"},
      {"gd index", 16 * 512, 0x1000000000000000 | 4000000, "grain directory entry 0"},
      {"gte kind 0 not 0", gt0 + 2 * 8, 5, "grain table entry for grain 8194"},
      {"gte kind 7", gt0 + 2 * 8, uint64_t{7} << 60, "grain table entry for grain 8194"},
      {"gte past end", gt0 + 2 * 8, uint64_t{3} << 60 | 1000000, "points past the end"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir dir;
    SeSparseSpec spec = all_kinds_spec();
    spec.writes.push_back(data(32 * kMiB + 2 * kGrain, kGrain, 9));  // grain 8194, in table 0
    spec.dirty = c.off == ~uint64_t{0};
    std::string img = make(dir, "vm-000001", spec);
    std::string ext = dir.file("vm-000001-sesparse.vmdk");
    if (!spec.dirty) {
      auto bytes = read_file(ext);
      ASSERT_LE(c.off + 8, bytes.size());
      vix::vmdk::store_le(&bytes[c.off], c.value, 8);
      write_file(ext, bytes);
    }
    auto opener = vix::make_local_opener();
    vix::vmdk::OpenOptions o;
    o.read_only = true;
    auto disk = vix::vmdk::open(*opener, img, o);
    std::string msg;
    if (!disk.ok()) {
      msg = disk.error().message;
    } else {
      std::vector<uint8_t> buf(2048 * 512);
      for (uint64_t s = 0; s < (*disk)->capacity_sectors() && msg.empty(); s += 2048) {
        auto r =
            (*disk)->read(s, std::min<uint64_t>(2048, (*disk)->capacity_sectors() - s), buf.data());
        if (!r.ok()) msg = r.error().message;
      }
    }
    EXPECT_NE(msg.find("vm-000001-sesparse.vmdk"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.field), std::string::npos) << msg;
  }
}

// qemu refuses a dirty journal too: the oracle agrees that it is not a readable image.
TEST(VmdkSesparse, QemuRefusesDirtyJournal) {
  TempDir dir;
  SeSparseSpec spec = all_kinds_spec();
  spec.dirty = true;
  std::string img = make(dir, "d", spec);
  EXPECT_NE(vixtest::run("qemu-img info " + sh_quote(img)).exit_code, 0);
}

// flat -> vmfsSparse (COWD, built by hand as in §8) -> SEsparse: every link kind an ESXi
// datastore mixes, read as qemu reads the chain.
TEST(VmdkSesparse, ChainWithCowdAndFlat) {
  TempDir dir;
  const uint32_t cap = 8192, gs = 16;  // 4 MiB
  std::string flat = dir.file("flat.vmdk");
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(flat) + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0xaa 0 4M' " + sh_quote(flat));
  std::vector<uint8_t> f(48 * 512, 0);  // header 0..3, GD @4, GT @5..36, grains from 48
  auto put32 = [&](size_t o, uint32_t v) {
    for (int i = 0; i < 4; ++i) f[o + i] = uint8_t(v >> (8 * i));
  };
  std::memcpy(f.data(), "COWD", 4);
  put32(4, 1), put32(8, 3), put32(12, cap), put32(16, gs), put32(20, 4), put32(24, 1);
  put32(4 * 512, 5);
  for (uint32_t grain : {0u, 7u, 300u, 511u}) {
    put32(5 * 512 + grain * 4, uint32_t(f.size() / 512));
    auto n = noise(gs * 512, grain);
    f.insert(f.end(), n.begin(), n.end());
  }
  vixtest::write_file(dir.file("cowd-delta.vmdk"), f);
  char ids[64];
  std::snprintf(ids, sizeof ids, "CID=22334455\nparentCID=%08x\n", cid_of(flat));
  vixtest::write_file(dir.file("cowd.vmdk"),
                      std::string("# Disk DescriptorFile\nversion=1\n") + ids +
                          "createType=\"vmfsSparse\"\nparentFileNameHint=\"flat.vmdk\"\n"
                          "# Extent description\nRW 8192 VMFSSPARSE \"cowd-delta.vmdk\"\n");
  SeSparseSpec s;
  s.capacity_sectors = cap;
  s.parent_hint = "cowd.vmdk";
  s.parent_cid = 0x22334455;
  // Over COWD grain 0 (sectors 0..15): one data grain, one zero grain; a zero grain over flat.
  s.writes = {data(0, 100, 41), zeros(kGrain, kGrain), zeros(kMiB, 2 * kGrain),
              unmapped(300 * 16 * 512, kGrain)};
  std::string img = make(dir, "leaf", s);
  auto want = check_like_qemu(img);
  EXPECT_EQ(want[kGrain], 0);          // zero grain over COWD data
  EXPECT_NE(want[2 * kGrain], 0);      // COWD data through the SEsparse hole
  EXPECT_EQ(want[3 * kMiB], 0xaa);     // flat data through two holes
  EXPECT_EQ(want[300 * 16 * 512], 0);  // unmapped over COWD data
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->info().num_links, 3);
}
