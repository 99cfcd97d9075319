// Adversarial corpus for the VMDK engine: broken files made at test time by patching
// qemu-img-made images. Each must fail with a precise VixError (from vmdk::open or from a read)
// whose message names the file; none may crash, hang or allocate without bound.
#include <gtest/gtest.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "vmdk/sparse_layout.h"
#include "vmdk/vmdk.h"

using vix::vmdk::load_le;
using vix::vmdk::store_le;
using vixtest::run_ok;
using vixtest::sh_quote;

namespace {

std::string qemu(const std::string& dir, const std::string& cmd) {
  return run_ok("cd " + sh_quote(dir) + " && " + cmd);
}

void patch(const std::string& path, uint64_t off, uint64_t value, int bytes) {
  auto data = vixtest::read_file(path);
  ASSERT_LE(off + bytes, data.size());
  store_le(&data[off], value, bytes);
  vixtest::write_file(path, data);
}

uint64_t peek(const std::string& path, uint64_t off, int bytes) {
  auto data = vixtest::read_file(path);
  EXPECT_LE(off + bytes, data.size());
  return off + bytes <= data.size() ? load_le(&data[off], bytes) : 0;
}

void truncate_file(const std::string& path, uint64_t size) {
  std::filesystem::resize_file(path, size);
}

// Replaces the embedded descriptor (sectors 1..20) of a KDMV file.
void set_embedded(const std::string& path, const std::string& text) {
  auto data = vixtest::read_file(path);
  ASSERT_GE(data.size(), 512u + 10240u);
  ASSERT_LE(text.size(), 10240u);
  std::fill(data.begin() + 512, data.begin() + 512 + 10240, 0);
  std::copy(text.begin(), text.end(), data.begin() + 512);
  vixtest::write_file(path, data);
}

std::string embedded(const std::string& path) {
  auto data = vixtest::read_file(path);
  std::string t(data.begin() + 512, data.begin() + 512 + 10240);
  return t.substr(0, t.find('\0'));
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

// Opens path read-only; if that works, reads the first `sectors` sectors in 64 KiB pieces and
// asks for the allocation map. Returns the first error.
vix::Result<void> open_and_read(const std::string& path, uint64_t sectors = 4096) {
  auto opener = vix::make_local_opener();
  vix::vmdk::OpenOptions o;
  VIX_ASSIGN_OR_RETURN(auto disk, vix::vmdk::open(*opener, path, o));
  std::vector<uint8_t> buf(128 * 512);
  const uint64_t cap = disk->capacity_sectors();
  for (uint64_t s = 0; s < std::min(sectors, cap); s += 128) {
    VIX_TRY(disk->read(s, std::min<uint64_t>(128, cap - s), buf.data()));
  }
  VIX_ASSIGN_OR_RETURN(auto extents, disk->allocated(0, cap));
  (void)extents;
  return vix::ok();
}

// The failure must carry one of `codes` and name `file` (a path or base name).
void expect_failure(const std::string& path, std::initializer_list<VixError> codes,
                    const std::string& file, uint64_t sectors = 4096) {
  SCOPED_TRACE(path);
  auto r = open_and_read(path, sectors);
  ASSERT_FALSE(r.ok()) << "corrupt image was accepted";
  bool code_ok = false;
  for (VixError c : codes) code_ok |= r.error().code == c;
  EXPECT_TRUE(code_ok) << "code " << r.error().code << ": " << r.error().message;
  EXPECT_NE(r.error().message.find(file), std::string::npos) << r.error().message;
}

constexpr VixError kInval = VIX_E_DISK_INVAL;
// Table pointers and grain contents that lie are "needs repair" or "invalid": both are fine.
constexpr std::initializer_list<VixError> kCorrupt = {VIX_E_DISK_INVAL, VIX_E_DISK_NEEDSREPAIR};

class VmdkCorrupt : public ::testing::Test {
 protected:
  // A 10M monolithicSparse image with data in grain 0 and grain 16.
  std::string sparse(const std::string& name) {
    qemu(dir_.path(), "qemu-img create -q -f vmdk " + name +
                          " 10M && qemu-io -f vmdk -c "
                          "'write -P 0x5a 0 64k' -c 'write -P 0x11 1M 64k' " +
                          name + " >/dev/null");
    return dir_.file(name);
  }
  // A 1M streamOptimized image converted from raw data (grains 0 and 8 non-zero).
  std::string stream(const std::string& name) {
    qemu(dir_.path(), "qemu-img create -q -f raw " + name +
                          ".raw 1M && qemu-io -f raw -c "
                          "'write -P 0x5a 0 64k' -c 'write -P 0x33 512k 64k' " +
                          name +
                          ".raw >/dev/null && qemu-img convert -O vmdk -o "
                          "subformat=streamOptimized " +
                          name + ".raw " + name);
    return dir_.file(name);
  }
  // Host sector of grain `g` (via GD[0] and the first GT) of a qemu-made sparse file.
  uint64_t grain_sector(const std::string& path, uint64_t g) {
    uint64_t gd = peek(path, 56, 8);
    uint64_t gt = peek(path, gd * 512, 4);
    return peek(path, gt * 512 + g * 4, 4);
  }
  vixtest::TempDir dir_;
};

}  // namespace

TEST_F(VmdkCorrupt, PristineImagesOpen) {
  // The corpus is only meaningful if the unpatched sources are accepted.
  auto a = open_and_read(sparse("ok.vmdk"));
  EXPECT_TRUE(a.ok()) << a.error().message;
  auto b = open_and_read(stream("oks.vmdk"));
  EXPECT_TRUE(b.ok()) << b.error().message;
}

TEST_F(VmdkCorrupt, TruncatedHeader) {
  std::string f = sparse("trunc.vmdk");
  truncate_file(f, 100);
  expect_failure(f, {kInval}, "trunc.vmdk");
}

TEST_F(VmdkCorrupt, FileShorterThanOverhead) {
  std::string f = sparse("short.vmdk");
  truncate_file(f, 20 * 512);
  expect_failure(f, {kInval}, "short.vmdk");
}

TEST_F(VmdkCorrupt, BadMagic) {
  std::string f = sparse("magic.vmdk");
  patch(f, 0, 0x564D4441, 4);  // "ADMV"
  expect_failure(f, {kInval}, "magic.vmdk");
}

TEST_F(VmdkCorrupt, UnsupportedVersion) {
  std::string f = sparse("ver.vmdk");
  patch(f, 4, 4, 4);
  expect_failure(f, {kInval}, "ver.vmdk");
}

TEST_F(VmdkCorrupt, GrainSizeZero) {
  std::string f = sparse("gs0.vmdk");
  patch(f, 20, 0, 8);
  expect_failure(f, {kInval}, "gs0.vmdk");
}

TEST_F(VmdkCorrupt, GrainSizeHuge) {
  std::string f = sparse("gsbig.vmdk");
  patch(f, 20, uint64_t{1} << 40, 8);
  expect_failure(f, {kInval}, "gsbig.vmdk");
  patch(f, 20, 0x400000, 8);  // just over qemu's 0x200000 limit
  expect_failure(f, {kInval}, "gsbig.vmdk");
}

TEST_F(VmdkCorrupt, TooManyGtesPerGt) {
  std::string f = sparse("gte.vmdk");
  patch(f, 44, 513, 4);
  expect_failure(f, {kInval}, "gte.vmdk");
  patch(f, 44, 0, 4);
  expect_failure(f, {kInval}, "gte.vmdk");
}

TEST_F(VmdkCorrupt, CapacityOverflow) {
  std::string f = sparse("cap.vmdk");
  patch(f, 12, ~uint64_t{0}, 8);
  expect_failure(f, {kInval}, "cap.vmdk");
  patch(f, 12, uint64_t{1} << 63, 8);
  expect_failure(f, {kInval}, "cap.vmdk");
}

TEST_F(VmdkCorrupt, GrainDirectoryEntryCountHuge) {
  // 2^40 sectors with one-sector grains and one-entry GTs: 2^40 GD entries.
  std::string f = sparse("gdn.vmdk");
  patch(f, 12, uint64_t{1} << 40, 8);
  patch(f, 20, 1, 8);
  patch(f, 44, 1, 4);
  expect_failure(f, {kInval}, "gdn.vmdk");
}

TEST_F(VmdkCorrupt, GrainDirectoryPastEof) {
  std::string f = sparse("gdeof.vmdk");
  patch(f, 56, 1u << 30, 8);
  expect_failure(f, {kInval}, "gdeof.vmdk");
}

TEST_F(VmdkCorrupt, GdEntryPointsPastEof) {
  std::string f = sparse("gteof.vmdk");
  patch(f, peek(f, 56, 8) * 512, 0x7fffff00, 4);
  expect_failure(f, kCorrupt, "gteof.vmdk");
}

TEST_F(VmdkCorrupt, GdEntryPointsIntoHeader) {
  // GD[0] = 1: the "grain table" would be the embedded descriptor's text. 0 (unallocated) is
  // the only legal value below the tables.
  std::string f = sparse("gthdr.vmdk");
  patch(f, peek(f, 56, 8) * 512, 1, 4);
  expect_failure(f, kCorrupt, "gthdr.vmdk");
}

TEST_F(VmdkCorrupt, GrainTableEntryPointsIntoHeader) {
  std::string f = sparse("gtehdr.vmdk");
  uint64_t gd = peek(f, 56, 8);
  uint64_t gt = peek(f, gd * 512, 4);
  patch(f, gt * 512, 0, 4);  // grain 0 now unallocated: legal
  ASSERT_TRUE(open_and_read(f).ok());
  patch(f, gt * 512 + 4, 2, 4);  // grain 1 lives in the descriptor area
  expect_failure(f, kCorrupt, "gtehdr.vmdk");
}

TEST_F(VmdkCorrupt, GrainTableEntryPastEof) {
  std::string f = sparse("gteeof.vmdk");
  uint64_t gd = peek(f, 56, 8);
  uint64_t gt = peek(f, gd * 512, 4);
  patch(f, gt * 512 + 4, 0xfffff000, 4);
  // qemu reads zeros here and check reports "points after EOF"; a reader may flag it. Either
  // zeros or a corruption error is acceptable, a crash is not.
  auto r = open_and_read(f);
  if (!r.ok()) {
    bool code_ok = r.error().code == VIX_E_DISK_INVAL || r.error().code == VIX_E_DISK_NEEDSREPAIR;
    EXPECT_TRUE(code_ok) << r.error().message;
    EXPECT_NE(r.error().message.find("gteeof.vmdk"), std::string::npos) << r.error().message;
  }
}

TEST_F(VmdkCorrupt, StreamBadFooter) {
  std::string f = stream("foot.vmdk");
  patch(f, 56, ~uint64_t{0}, 8);  // GD_AT_END, but the tail holds no footer
  expect_failure(f, {kInval}, "foot.vmdk");
}

TEST_F(VmdkCorrupt, StreamBadZlibGrain) {
  std::string f = stream("zlib.vmdk");
  uint64_t g = grain_sector(f, 0);
  ASSERT_NE(g, 0u);
  ASSERT_EQ(peek(f, g * 512 + 12, 2), 0x9c78u);  // zlib header follows the 12-byte marker
  auto data = vixtest::read_file(f);
  for (int i = 16; i < 40; ++i) data[g * 512 + i] ^= 0xa5;
  vixtest::write_file(f, data);
  expect_failure(f, kCorrupt, "zlib.vmdk");
}

TEST_F(VmdkCorrupt, StreamMarkerSizeTooBig) {
  std::string f = stream("msize.vmdk");
  uint64_t g = grain_sector(f, 0);
  ASSERT_NE(g, 0u);
  patch(f, g * 512 + 8, 2 * 65536 + 1, 4);
  expect_failure(f, kCorrupt, "msize.vmdk");
  patch(f, g * 512 + 8, 0xffffffff, 4);
  expect_failure(f, kCorrupt, "msize.vmdk");
}

TEST_F(VmdkCorrupt, StreamMarkerSizeZero) {
  std::string f = stream("mzero.vmdk");
  uint64_t g = grain_sector(f, 8);
  ASSERT_NE(g, 0u);
  patch(f, g * 512 + 8, 0, 4);
  expect_failure(f, kCorrupt, "mzero.vmdk");
}

TEST_F(VmdkCorrupt, DescriptorWithAMillionExtents) {
  std::string f = dir_.file("million.vmdk");
  std::string text =
      "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n"
      "createType=\"monolithicFlat\"\n";
  text.reserve(text.size() + 1000000 * 12);
  for (int i = 0; i < 1000000; ++i) text += "RW 1 ZERO\n";
  vixtest::write_file(f, text);
  expect_failure(f, {kInval}, "million.vmdk");
  // Just under the byte limit, but over the extent limit.
  std::string g = dir_.file("many.vmdk");
  std::string t2 = "CID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n";
  for (int i = 0; i < 20000; ++i) t2 += "RW 1 ZERO\n";
  vixtest::write_file(g, t2);
  expect_failure(g, {kInval}, "many.vmdk");
}

TEST_F(VmdkCorrupt, ExtentFileMissing) {
  qemu(dir_.path(), "qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 1M");
  std::filesystem::remove(dir_.file("flat-flat.vmdk"));
  expect_failure(dir_.file("flat.vmdk"), {VIX_E_FILE_NOT_FOUND}, "flat-flat.vmdk");
  qemu(dir_.path(), "qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse sp.vmdk 3G");
  std::filesystem::remove(dir_.file("sp-s002.vmdk"));
  expect_failure(dir_.file("sp.vmdk"), {VIX_E_FILE_NOT_FOUND}, "sp-s002.vmdk");
}

TEST_F(VmdkCorrupt, SparseExtentOfTextDescriptorIsGarbage) {
  qemu(dir_.path(), "qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse sg.vmdk 1M");
  vixtest::write_file(dir_.file("sg-s001.vmdk"), std::string(4096, 'x'));
  expect_failure(dir_.file("sg.vmdk"), {kInval}, "sg-s001.vmdk");
}

TEST_F(VmdkCorrupt, MissingParent) {
  qemu(dir_.path(),
       "qemu-img create -q -f vmdk base.vmdk 1M && "
       "qemu-img create -q -f vmdk -b base.vmdk -F vmdk child.vmdk");
  std::filesystem::remove(dir_.file("base.vmdk"));
  expect_failure(dir_.file("child.vmdk"), {VIX_E_FILE_NOT_FOUND, VIX_E_DISK_PARTIALCHAIN},
                 "base.vmdk");
}

TEST_F(VmdkCorrupt, MismatchedParentCid) {
  qemu(dir_.path(),
       "qemu-img create -q -f vmdk base.vmdk 1M && "
       "qemu-img create -q -f vmdk -b base.vmdk -F vmdk child.vmdk && "
       "qemu-io -f vmdk -c 'write -P 0x77 0 64k' child.vmdk >/dev/null && "
       "qemu-io -f vmdk -c 'write -P 0x01 64k 64k' base.vmdk >/dev/null");
  std::string c = dir_.file("child.vmdk");
  auto opener = vix::make_local_opener();
  auto disk = vix::vmdk::open(*opener, c, vix::vmdk::OpenOptions{});
  ASSERT_TRUE(disk.ok()) << disk.error().message;  // open itself does not check (qemu §7)
  std::vector<uint8_t> buf(128 * 512);
  auto own = (*disk)->read(0, 128, buf.data());  // the child's own grain still reads
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_EQ(buf[0], 0x77);
  auto r = (*disk)->read(128, 128, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_DISK_CID_MISMATCH) << r.error().message;
  EXPECT_NE(r.error().message.find("child.vmdk"), std::string::npos) << r.error().message;
}

TEST_F(VmdkCorrupt, ChainLoopSelf) {
  qemu(dir_.path(),
       "qemu-img create -q -f vmdk base.vmdk 1M && "
       "qemu-img create -q -f vmdk -b base.vmdk -F vmdk self.vmdk");
  std::string f = dir_.file("self.vmdk");
  set_embedded(f, replace_all(embedded(f), "\"base.vmdk\"", "\"self.vmdk\""));
  expect_failure(f, {VIX_E_DISK_INVALIDCHAIN, kInval}, "self.vmdk");
  // Also through "./" so that a plain string compare of hint and path cannot catch it.
  set_embedded(f, replace_all(embedded(f), "\"self.vmdk\"", "\"./self.vmdk\""));
  expect_failure(f, {VIX_E_DISK_INVALIDCHAIN, kInval}, "self.vmdk");
}

TEST_F(VmdkCorrupt, ChainLoopTwoCycle) {
  qemu(dir_.path(),
       "qemu-img create -q -f vmdk base.vmdk 1M && "
       "qemu-img create -q -f vmdk -b base.vmdk -F vmdk a.vmdk && "
       "qemu-img create -q -f vmdk -b base.vmdk -F vmdk b.vmdk");
  std::string a = dir_.file("a.vmdk"), b = dir_.file("b.vmdk");
  set_embedded(a, replace_all(embedded(a), "\"base.vmdk\"", "\"b.vmdk\""));
  set_embedded(b, replace_all(embedded(b), "\"base.vmdk\"", "\"a.vmdk\""));
  expect_failure(a, {VIX_E_DISK_INVALIDCHAIN, kInval}, "a.vmdk");
}

TEST_F(VmdkCorrupt, FlatExtentBeyondFileReadsZeros) {
  // qemu (§11): an extent past its file's end reads as zeros; that is not corruption.
  qemu(dir_.path(),
       "qemu-img create -q -f vmdk -o subformat=monolithicFlat fb.vmdk 1M && "
       "qemu-io -f vmdk -c 'write -P 0x44 0 1M' fb.vmdk >/dev/null");
  truncate_file(dir_.file("fb-flat.vmdk"), 512 * 1024 + 100);
  auto opener = vix::make_local_opener();
  auto disk = vix::vmdk::open(*opener, dir_.file("fb.vmdk"), vix::vmdk::OpenOptions{});
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(2048 * 512);
  auto r = (*disk)->read(0, 2048, buf.data());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(buf[0], 0x44);
  EXPECT_EQ(buf[512 * 1024 + 99], 0x44);
  EXPECT_EQ(buf[512 * 1024 + 100], 0);
  EXPECT_EQ(buf.back(), 0);
  // Far beyond: an offset of 2^40 sectors.
  vixtest::write_file(dir_.file("far.vmdk"),
                      std::string("CID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
                                  "RW 2048 FLAT \"fb-flat.vmdk\" 1099511627776\n"));
  auto far = vix::vmdk::open(*opener, dir_.file("far.vmdk"), vix::vmdk::OpenOptions{});
  ASSERT_TRUE(far.ok()) << far.error().message;
  auto rf = (*far)->read(0, 2048, buf.data());
  ASSERT_TRUE(rf.ok()) << rf.error().message;
  EXPECT_EQ(buf[0], 0);
}

TEST_F(VmdkCorrupt, GarbageText) {
  std::string text;
  for (int i = 0; i < 4000; ++i) text += static_cast<char>((i * 131 + 7) % 250 + 3);
  std::string f = dir_.file("garbage.vmdk");
  vixtest::write_file(f, text);
  expect_failure(f, {kInval}, "garbage.vmdk");
  std::string e = dir_.file("empty.vmdk");
  vixtest::write_file(e, std::string());
  expect_failure(e, {kInval}, "empty.vmdk");
  std::string n = dir_.file("noext.vmdk");
  vixtest::write_file(n, std::string("CID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"));
  expect_failure(n, {kInval}, "noext.vmdk");
  std::string big = dir_.file("big.vmdk");
  vixtest::write_file(big, std::string(3 << 20, 'a'));
  expect_failure(big, {kInval}, "big.vmdk");
}

TEST_F(VmdkCorrupt, EmbeddedDescriptorGarbage) {
  std::string f = sparse("emb.vmdk");
  set_embedded(f, "this is not a descriptor\n");
  expect_failure(f, {kInval}, "emb.vmdk");
}

TEST_F(VmdkCorrupt, EmbeddedDescriptorAreaHugeOrPastEof) {
  // qemu ignores descriptorSize (it always uses 10240 bytes at 512); a reader may honour it but
  // must bound it. Either a clean open or DISK_INVAL is right; an allocation of 2^49 bytes is not.
  std::string f = sparse("dsize.vmdk");
  patch(f, 36, uint64_t{1} << 40, 8);
  auto r = open_and_read(f);
  if (!r.ok()) {
    EXPECT_EQ(r.error().code, kInval) << r.error().message;
    EXPECT_NE(r.error().message.find("dsize.vmdk"), std::string::npos) << r.error().message;
  }
  std::string g = sparse("doff.vmdk");
  patch(g, 28, uint64_t{1} << 40, 8);
  auto r2 = open_and_read(g);
  if (!r2.ok()) {
    EXPECT_EQ(r2.error().code, kInval) << r2.error().message;
    EXPECT_NE(r2.error().message.find("doff.vmdk"), std::string::npos) << r2.error().message;
  }
}

TEST_F(VmdkCorrupt, SplitExtentHeaderCapacityOverflowsDescriptorSum) {
  // Two sparse extents whose headers each claim 2^53 sectors: the sum must be caught.
  qemu(dir_.path(), "qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse two.vmdk 3G");
  patch(dir_.file("two-s001.vmdk"), 12, uint64_t{1} << 53, 8);
  patch(dir_.file("two-s002.vmdk"), 12, uint64_t{1} << 53, 8);
  expect_failure(dir_.file("two.vmdk"), {kInval}, "two");
}
