// Reads through vmdk::open compared with qemu-img's view of the same disks (the oracle).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "common/byte_source.h"
#include "unit/vmdk_test_util.h"
#include "vmdk/vmdk.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;
using namespace vmdktest;

namespace {

constexpr uint64_t kMiB = 1 << 20;

std::vector<vix::SectorExtent> clip(std::vector<vix::SectorExtent> v, uint64_t cap) {
  std::vector<vix::SectorExtent> out;
  for (auto e : v) {
    if (e.start >= cap) continue;
    e.count = std::min(e.count, cap - e.start);
    out.push_back(e);
  }
  return out;
}

// Makes an image of the given subformat, writes random patterns with qemu-io, and checks that the
// engine reads what qemu-img does (whole disk, in two request sizes) and maps the same data.
void check_subformat(const std::string& subformat, uint64_t size, uint32_t seed) {
  TempDir dir;
  std::string img = dir.file("d.vmdk");
  run_ok("qemu-img create -q -f vmdk -o subformat=" + subformat + " " + sh_quote(img) + " " +
         std::to_string(size));
  qemu_write(img, random_patterns(0, size, 40, seed));
  auto want = vixtest::qemu_raw(img);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->capacity_sectors() * 512, size);
  expect_same(engine_read_all(*disk), want, subformat + " 1 MiB reads");
  expect_same(engine_read_all(*disk, 7), want, subformat + " 7-sector reads");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok()) << alloc.error().message;
  EXPECT_EQ(*alloc, clip(qemu_map(img, 128), disk->capacity_sectors())) << subformat;
  EXPECT_EQ(disk->info().create_type, subformat);
}

}  // namespace

TEST(VmdkRead, MonolithicSparse) {
  check_subformat("monolithicSparse", 48 * kMiB + 1024, 1);
}
TEST(VmdkRead, MonolithicFlat) {
  check_subformat("monolithicFlat", 20 * kMiB, 2);
}
TEST(VmdkRead, TwoGbMaxExtentSparseSmall) {
  check_subformat("twoGbMaxExtentSparse", 30 * kMiB, 3);
}
TEST(VmdkRead, TwoGbMaxExtentFlatSmall) {
  check_subformat("twoGbMaxExtentFlat", 30 * kMiB, 4);
}

// Extent boundaries at 2 GiB and 4 GiB: windows around them, compared with a raw conversion.
TEST(VmdkRead, TwoGbMaxExtentAcrossBoundaries) {
  for (std::string sub : {"twoGbMaxExtentSparse", "twoGbMaxExtentFlat"}) {
    TempDir dir;
    std::string img = dir.file("s.vmdk");
    run_ok("qemu-img create -q -f vmdk -o subformat=" + sub + " " + sh_quote(img) + " 5G");
    uint64_t b1 = 2048 * kMiB, b2 = 4096 * kMiB;
    auto ps = random_patterns(b1 - kMiB, b1 + kMiB, 10, 5);
    auto ps2 = random_patterns(b2 - kMiB, b2 + kMiB, 10, 6);
    ps.insert(ps.end(), ps2.begin(), ps2.end());
    ps.push_back({b1 - 1000, 3000, 0x42});
    qemu_write(img, ps);
    RawOracle oracle(img);
    auto disk = open_disk(img);
    ASSERT_TRUE(disk);
    EXPECT_EQ(disk->capacity_sectors(), 5 * 2048 * 1024u);
    for (uint64_t at : {b1 - kMiB, b2 - kMiB, 5120 * kMiB - 2 * kMiB}) {
      std::vector<uint8_t> got(2 * kMiB);
      ASSERT_TRUE(disk->read(at / 512, got.size() / 512, got.data()).ok());
      expect_same(got, oracle.window(at, got.size()), sub + " window");
    }
    auto alloc = disk->allocated(0, disk->capacity_sectors());
    ASSERT_TRUE(alloc.ok());
    if (sub == "twoGbMaxExtentSparse") {
      EXPECT_EQ(*alloc, clip(qemu_map(img, 128), 5 << 21));
    }
  }
}

TEST(VmdkRead, StreamOptimized) {
  TempDir dir;
  std::string raw = dir.file("src.raw"), img = dir.file("s.vmdk");
  run_ok("truncate -s 9437696 " + sh_quote(raw));  // not a multiple of the grain size
  std::string cmd = "qemu-io -f raw";
  auto ps = random_patterns(0, 9437696, 30, 7);
  run_ok(cmd + qemu_io_writes(ps) + " -c 'write -P 0x77 9436160 1536' " + sh_quote(raw));
  run_ok("head -c 300000 /dev/urandom | dd of=" + sh_quote(raw) +
         " bs=1 seek=4000000 conv=notrunc status=none");
  run_ok("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + sh_quote(raw) + " " +
         sh_quote(img));
  auto want = vixtest::read_file(raw);
  want.resize((want.size() + 511) / 512 * 512, 0);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->info().create_type, "streamOptimized");
  expect_same(engine_read_all(*disk), want, "stream 1 MiB reads");
  expect_same(engine_read_all(*disk, 3), want, "stream 3-sector reads");
  expect_same(engine_read_all(*disk), vixtest::qemu_raw(img), "stream vs qemu");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok());
  EXPECT_EQ(*alloc, clip(qemu_map(img, 128), disk->capacity_sectors()));
}

// The VMware layout: GD at the end behind a footer; grains, GT/GD markers, footer, EOS.
TEST(VmdkRead, StreamOptimizedGdAtEnd) {
  TempDir dir;
  std::string raw = dir.file("src.raw"), img = dir.file("v.vmdk");
  run_ok("truncate -s 4M " + sh_quote(raw));
  auto ps = random_patterns(0, 4 * kMiB, 12, 8);
  run_ok("qemu-io -f raw" + qemu_io_writes(ps) + " " + sh_quote(raw));
  run_ok("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + sh_quote(raw) + " " +
         sh_quote(img));
  // Rebuild as GD_AT_END: copy GD/GTs to the end behind markers, then footer and EOS.
  auto f = vixtest::read_file(img);
  f.resize((f.size() + 511) / 512 * 512, 0);
  auto le32 = [&](size_t o) {
    return f[o] | f[o + 1] << 8 | f[o + 2] << 16 | uint32_t(f[o + 3]) << 24;
  };
  auto put64 = [](std::vector<uint8_t>& v, size_t o, uint64_t x) {
    for (int i = 0; i < 8; ++i) v[o + i] = uint8_t(x >> (8 * i));
  };
  auto put32 = [](std::vector<uint8_t>& v, size_t o, uint32_t x) {
    for (int i = 0; i < 4; ++i) v[o + i] = uint8_t(x >> (8 * i));
  };
  uint64_t gd = le32(56);  // low half of gdOffset
  uint64_t gd_entries = (8192 + 65535) / 65536;
  std::vector<uint8_t> header(f.begin(), f.begin() + 512);
  auto marker = [&](uint64_t val, uint32_t type) {
    std::vector<uint8_t> m(512, 0);
    put64(m, 0, val);
    put32(m, 12, type);
    f.insert(f.end(), m.begin(), m.end());
  };
  std::vector<uint32_t> new_gd;
  for (uint64_t i = 0; i < gd_entries; ++i) {
    uint32_t gt = le32(gd * 512 + i * 4);
    marker(4, 1);
    new_gd.push_back(uint32_t(f.size() / 512));
    std::vector<uint8_t> t(f.begin() + gt * 512, f.begin() + gt * 512 + 2048);
    f.insert(f.end(), t.begin(), t.end());
  }
  marker(1, 2);
  uint64_t new_gd_sec = f.size() / 512;
  std::vector<uint8_t> g(512, 0);
  for (size_t i = 0; i < new_gd.size(); ++i) put32(g, i * 4, new_gd[i]);
  f.insert(f.end(), g.begin(), g.end());
  marker(1, 3);
  std::vector<uint8_t> footer = header;
  put64(footer, 56, new_gd_sec);
  put32(footer, 8, 0x30001);  // no redundant GD, like VMware
  f.insert(f.end(), footer.begin(), footer.end());
  marker(0, 0);
  // Header says GD_AT_END; the old GD/GTs in front are wiped so only the footer can be right.
  put64(f, 56, ~uint64_t{0});
  put32(f, 8, 0x30001);
  for (uint64_t i = 0; i < gd_entries; ++i) {
    uint32_t gt = le32(gd * 512 + i * 4);
    std::fill(f.begin() + gt * 512, f.begin() + gt * 512 + 2048, 0);
  }
  vixtest::write_file(img, f);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  auto want = vixtest::read_file(raw);
  expect_same(engine_read_all(*disk), want, "GD_AT_END stream");
  expect_same(want, vixtest::qemu_raw(img), "qemu agrees");
}

TEST(VmdkRead, ZeroedGrainNeverShowsParent) {
  TempDir dir;
  std::string base = dir.file("base.vmdk"), child = dir.file("child.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0xaa 0 4M' " + sh_quote(base));
  run_ok("qemu-img create -q -f vmdk -o zeroed_grain=on -b base.vmdk -F vmdk " + sh_quote(child));
  run_ok("qemu-io -f vmdk -c 'write -z 65536 131072' -c 'write -P 0x11 300000 1000' " +
         sh_quote(child));
  auto disk = open_disk(child);
  ASSERT_TRUE(disk);
  auto want = vixtest::qemu_raw(child);
  EXPECT_EQ(want[65536], 0);
  expect_same(engine_read_all(*disk), want, "zeroed grains");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok());
  // Zeroed grains are not data; everything else is (parent fully written).
  std::vector<vix::SectorExtent> expect{{0, 128}, {384, 8192 - 384}};
  EXPECT_EQ(*alloc, expect);
}

class VmdkChain : public ::testing::Test {
 protected:
  void SetUp() override {
    base = dir.file("base.vmdk");
    mid = dir.file("sub/mid.vmdk");
    leaf = dir.file("leaf.vmdk");
    run_ok("mkdir -p " + sh_quote(dir.file("sub")));
    run_ok("qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse " + sh_quote(base) +
           " 24M");
    qemu_write(base, random_patterns(0, 24 * kMiB, 30, 11));
    // Hints relative to the child's folder, like qemu resolves them.
    run_ok("qemu-img create -q -f vmdk -b ../base.vmdk -F vmdk " + sh_quote(mid));
    qemu_write(mid, random_patterns(0, 24 * kMiB, 30, 12));
    run_ok("qemu-img create -q -f vmdk -b sub/mid.vmdk -F vmdk " + sh_quote(leaf));
    qemu_write(leaf, random_patterns(0, 24 * kMiB, 30, 13, 50000));
  }
  TempDir dir;
  std::string base, mid, leaf;
};

TEST_F(VmdkChain, ThreeDeepReadsLikeQemu) {
  auto disk = open_disk(leaf);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->info().num_links, 3);
  EXPECT_EQ(disk->info().parent_file_name_hint, "sub/mid.vmdk");
  expect_same(engine_read_all(*disk), vixtest::qemu_raw(leaf), "3-deep chain");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok());
  EXPECT_EQ(*alloc, qemu_map(leaf, 128));
  // Clipped, unaligned query.
  auto part = disk->allocated(1001, 20000);
  ASSERT_TRUE(part.ok());
  for (auto& e : *part) {
    EXPECT_GE(e.start, 1001u);
    EXPECT_LE(e.start + e.count, 21001u);
  }
}

TEST_F(VmdkChain, SingleLinkReadsOnlyTheLeaf) {
  auto disk = open_disk(leaf, true, true);
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->info().num_links, 1);
  auto got = engine_read_all(*disk);
  // The leaf alone: qemu with its backing file removed from view.
  std::string raw = dir.file("single.raw");
  run_ok("qemu-img convert -O raw " +
         sh_quote("json:{\"driver\":\"vmdk\",\"backing\":null,\"file\":{\"driver\":\"file\","
                  "\"filename\":\"" +
                  leaf + "\"}}") +
         " " + sh_quote(raw));
  auto want = vixtest::read_file(raw);
  expect_same(got, want, "single link");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok());
  uint64_t total = 0;
  for (auto& e : *alloc) total += e.count;
  EXPECT_LT(total, disk->capacity_sectors() / 2);
}

TEST_F(VmdkChain, ConcurrentReaders) {
  auto disk = open_disk(leaf);
  ASSERT_TRUE(disk);
  auto want = vixtest::qemu_raw(leaf);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      std::vector<uint8_t> buf;
      for (int i = 0; i < 300; ++i) {
        uint64_t n = 1 + rng() % 700;
        uint64_t s = rng() % (disk->capacity_sectors() - n);
        buf.resize(n * 512);
        if (!disk->read(s, n, buf.data()).ok() ||
            !std::equal(buf.begin(), buf.end(), want.begin() + s * 512))
          ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(VmdkChain, StaleParentFailsWithCidMismatch) {
  run_ok("qemu-io -f vmdk -c 'write -P 0x99 0 512' " + sh_quote(mid));
  auto disk = open_disk(leaf);  // open does not check; reads through the stale link do
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(512);
  // Find a sector the leaf itself holds and one it does not.
  auto own = open_disk(leaf, true, true);
  auto own_alloc = own->allocated(0, own->capacity_sectors());
  ASSERT_TRUE(own_alloc.ok());
  ASSERT_FALSE(own_alloc->empty());
  EXPECT_TRUE(disk->read((*own_alloc)[0].start, 1, buf.data()).ok());
  uint64_t hole = (*own_alloc)[0].start + (*own_alloc)[0].count;
  auto bad = disk->read(hole, 1, buf.data());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, static_cast<VixError>(VIX_E_DISK_CID_MISMATCH));
  EXPECT_NE(bad.error().message.find("mid.vmdk"), std::string::npos) << bad.error().message;
}

TEST_F(VmdkChain, MissingParentIsPartialChain) {
  run_ok("rm " + sh_quote(mid));
  auto opener = vix::make_local_opener();
  auto r = vix::vmdk::open(*opener, leaf, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_PARTIALCHAIN));
  vix::vmdk::OpenOptions single;
  single.single_link = true;
  EXPECT_TRUE(vix::vmdk::open(*opener, leaf, single).ok());
}

TEST(VmdkRead, ParentLoopIsAnError) {
  TempDir dir;
  std::string a = dir.file("a.vmdk"), b = dir.file("b.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(a) + " 1M");
  run_ok("qemu-img create -q -f vmdk -b a.vmdk -F vmdk " + sh_quote(b));
  // Make a's descriptor name b as its parent: a is its own ancestor.
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(dir.file("c.vmdk")) +
         " 1M");
  std::string desc =
      "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=87654321\n"
      "createType=\"monolithicFlat\"\nparentFileNameHint=\"c.vmdk\"\n"
      "# Extent description\nRW 2048 FLAT \"c-flat.vmdk\" 0\n";
  vixtest::write_file(dir.file("c.vmdk"), desc);
  auto opener = vix::make_local_opener();
  auto r = vix::vmdk::open(*opener, dir.file("c.vmdk"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_INVALIDCHAIN)) << r.error().message;
}

// vSAN and vVol descriptors name objects that only the host reads: a clear refusal, not a
// "file not found" for a path like "vsan://...".
TEST(VmdkRead, ObjectExtentsAreRefusedWithTheWayToReadThem) {
  TempDir dir;
  const std::string head =
      "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
      "createType=\"vmfs\"\n# Extent description\n";
  const std::pair<const char*, const char*> cases[] = {
      {"RW 2048 VSANSPARSE \"vsan://52c5b2a1-0d11-4d62-8b4e-3a9f0d2c1e77\"\n", "vsan object"},
      {"RW 2048 VMFS \"vvol://rfc4122.6b1e4c/rfc4122.9f2a\"\n", "vvol object"},
  };
  for (const auto& [extent, want] : cases) {
    vixtest::write_file(dir.file("obj.vmdk"), head + extent);
    auto opener = vix::make_local_opener();
    auto r = vix::vmdk::open(*opener, dir.file("obj.vmdk"), {});
    ASSERT_FALSE(r.ok()) << extent;
    EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_NOTSUPPORTED)) << r.error().message;
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("nbdssl"), std::string::npos) << r.error().message;
  }
}

// An encrypted disk's extents hold ciphertext: refused, never read as the disk's bytes.
TEST(VmdkRead, EncryptedDiskIsRefused) {
  TempDir dir;
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(dir.file("e.vmdk")) +
         " 1M");
  vixtest::write_file(dir.file("e.vmdk"),
                      "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=12345678\n"
                      "parentCID=ffffffff\ncreateType=\"vmfs\"\n"
                      "encryption.keySafe = \"vmware:key/list/(pair/(null/,HMAC-SHA-256,x))\"\n"
                      "encryption.data = \"AAAA\"\n"
                      "# Extent description\nRW 2048 VMFS \"e-flat.vmdk\"\n");
  auto opener = vix::make_local_opener();
  auto r = vix::vmdk::open(*opener, dir.file("e.vmdk"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_NOKEY)) << r.error().message;
  EXPECT_NE(r.error().message.find("encrypted (descriptor key 'encryption.keySafe')"),
            std::string::npos)
      << r.error().message;
}

// A 2 TiB sparse disk with grains near its end.
TEST(VmdkRead, TwoTiBSparseEnd) {
  TempDir dir;
  std::string img = dir.file("big.vmdk");
  uint64_t size = uint64_t{2} << 40;
  run_ok("qemu-img create -q -f vmdk " + sh_quote(img) + " 2T");
  std::vector<Pattern> ps{
      {size - 70000, 70000, 0x5e}, {size / 2 + 12345, 999, 0x21}, {size - 3 * kMiB - 7, 100, 0x33}};
  qemu_write(img, ps);
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  ASSERT_EQ(disk->capacity_sectors(), size / 512);
  std::vector<uint8_t> want(4 * kMiB, 0);
  for (auto& p : ps)
    if (p.off >= size - want.size())
      std::fill_n(want.begin() + (p.off - (size - want.size())), p.len, p.byte);
  std::vector<uint8_t> got(want.size());
  ASSERT_TRUE(disk->read((size - want.size()) / 512, want.size() / 512, got.data()).ok());
  expect_same(got, want, "end of 2 TiB disk");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok());
  // What qemu-img map says (asking it takes seconds on 2 TiB): the grains the writes touched.
  std::vector<vix::SectorExtent> expect{{(size / 2 + 12345) / 512 / 128 * 128, 128},
                                        {(size - 3 * kMiB - 7) / 512 / 128 * 128, 256},
                                        {(size - 70000) / 512 / 128 * 128, 256}};
  EXPECT_EQ(*alloc, expect);
  auto past = disk->read(size / 512, 1, got.data());
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));
}

// createType vmfs over a flat file, a FLAT extent with an offset, and a ZERO extent.
TEST(VmdkRead, VmfsAndZeroExtents) {
  TempDir dir;
  std::vector<uint8_t> a(2048 * 512), b(4096 * 512);
  std::mt19937 rng(21);
  for (auto& x : a) x = uint8_t(rng());
  for (auto& x : b) x = uint8_t(rng());
  vixtest::write_file(dir.file("d-flat.vmdk"), a);
  vixtest::write_file(dir.file("other.bin"), b);
  std::string desc =
      "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
      "createType=\"vmfs\"\n\n# Extent description\nRW 2048 VMFS \"d-flat.vmdk\"\n"
      "RW 1000 ZERO\nRW 3000 FLAT \"other.bin\" 1000\n\n# The Disk Data Base\n#DDB\n\n"
      "ddb.adapterType = \"lsilogic\"\nddb.geometry.cylinders = \"5\"\n"
      "ddb.geometry.heads = \"255\"\nddb.geometry.sectors = \"63\"\n"
      "ddb.geometry.biosCylinders = \"7\"\nddb.geometry.biosHeads = \"128\"\n"
      "ddb.geometry.biosSectors = \"32\"\nddb.uuid = \"60 00 C2 9b\"\n";
  vixtest::write_file(dir.file("d.vmdk"), desc);
  auto disk = open_disk(dir.file("d.vmdk"));
  ASSERT_TRUE(disk);
  ASSERT_EQ(disk->capacity_sectors(), 6048u);
  std::vector<uint8_t> want(a);
  want.resize(want.size() + 1000 * 512, 0);
  want.insert(want.end(), b.begin() + 1000 * 512, b.begin() + 4000 * 512);
  expect_same(engine_read_all(*disk, 333), want, "vmfs + zero + offset flat");
  auto info = disk->info();
  EXPECT_EQ(info.create_type, "vmfs");
  EXPECT_EQ(info.adapter, VIXDISKLIB_ADAPTER_SCSI_LSILOGIC);
  EXPECT_EQ(info.phys_geometry.heads, 255u);
  EXPECT_EQ(info.bios_geometry.cylinders, 7u);
  EXPECT_EQ(info.bios_geometry.sectors, 32u);
  EXPECT_EQ(info.uuid, "60 00 C2 9b");
  auto alloc = disk->allocated(0, disk->capacity_sectors());
  ASSERT_TRUE(alloc.ok());
  std::vector<vix::SectorExtent> expect{{0, 2048}, {3048, 3000}};
  EXPECT_EQ(*alloc, expect);
  auto md = disk->metadata();
  ASSERT_TRUE(md.ok());
  EXPECT_EQ(md->at("ddb.adapterType"), "lsilogic");
}

TEST(VmdkRead, InfoFromQemuDescriptor) {
  TempDir dir;
  std::string img = dir.file("i.vmdk");
  run_ok("qemu-img create -q -f vmdk -o adapter_type=buslogic " + sh_quote(img) + " 100M");
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  auto info = disk->info();
  EXPECT_EQ(info.capacity_sectors, 204800u);
  EXPECT_EQ(info.adapter, VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC);
  EXPECT_EQ(info.phys_geometry.cylinders, 12u);
  EXPECT_EQ(info.phys_geometry.heads, 255u);
  EXPECT_EQ(info.bios_geometry.heads, 255u);
  EXPECT_EQ(info.num_links, 1);
  EXPECT_EQ(info.create_type, "monolithicSparse");
  EXPECT_TRUE(disk->read_only());
  EXPECT_EQ(disk->transport_name(), "file");
}

// COWD (ESX sparse) built by hand, opened through a vmfsSparse descriptor; qemu reads and
// writes it the same way (§8, test vector 22).
TEST(VmdkRead, CowdExtentReadsAndWritesLikeQemu) {
  TempDir dir;
  const uint32_t cap = 8192, gs = 16;
  std::vector<uint8_t> f(48 * 512, 0);  // header 0..3, GD @4, GT @5..36, grains from 48
  auto put32 = [&](size_t o, uint32_t v) {
    for (int i = 0; i < 4; ++i) f[o + i] = uint8_t(v >> (8 * i));
  };
  std::memcpy(f.data(), "COWD", 4);
  put32(4, 1), put32(8, 3), put32(12, cap), put32(16, gs), put32(20, 4), put32(24, 1);
  put32(4 * 512, 5);
  std::mt19937 rng(41);
  for (uint32_t grain : {0u, 7u, 300u, 511u}) {
    put32(5 * 512 + grain * 4, uint32_t(f.size() / 512));
    for (uint32_t i = 0; i < gs * 512; ++i) f.push_back(uint8_t(rng()));
  }
  vixtest::write_file(dir.file("c-delta.vmdk"), f);
  vixtest::write_file(dir.file("c.vmdk"),
                      "# Disk DescriptorFile\nversion=1\nCID=11223344\nparentCID=ffffffff\n"
                      "createType=\"vmfsSparse\"\n\n# Extent description\n"
                      "RW 8192 VMFSSPARSE \"c-delta.vmdk\"\n");
  {
    auto disk = open_disk(dir.file("c.vmdk"), false);
    ASSERT_TRUE(disk);
    expect_same(engine_read_all(*disk, 5), vixtest::qemu_raw(dir.file("c.vmdk")), "COWD read");
    auto alloc = disk->allocated(0, cap);
    ASSERT_TRUE(alloc.ok());
    std::vector<vix::SectorExtent> expect{{0, 16}, {112, 16}, {4800, 16}, {8176, 16}};
    EXPECT_EQ(*alloc, expect);
    std::vector<uint8_t> buf(100 * 512, 0x6d);
    ASSERT_TRUE(disk->write(7 * 16 + 3, 100, buf.data()).ok());
  }
  auto want = vixtest::qemu_raw(dir.file("c.vmdk"));
  EXPECT_EQ(want[(7 * 16 + 3) * 512 + 50000], 0x6d);
  auto disk = open_disk(dir.file("c.vmdk"));
  ASSERT_TRUE(disk);
  expect_same(engine_read_all(*disk), want, "COWD after engine write");
}
