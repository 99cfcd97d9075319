#include <gtest/gtest.h>

#include <set>
#include <string>

#include "support/fixtures.h"
#include "vmdk/descriptor.h"

using vix::vmdk::Descriptor;
using vix::vmdk::ExtentLine;

namespace {

const char kQemuFlat[] =
    "# Disk DescriptorFile\n"
    "version=1\n"
    "CID=7ae03aee\n"
    "parentCID=ffffffff\n"
    "createType=\"monolithicFlat\"\n"
    "\n"
    "# Extent description\n"
    "RW 204800 FLAT \"x-flat.vmdk\" 0\n"
    "\n"
    "# The Disk Data Base\n"
    "#DDB\n"
    "\n"
    "ddb.virtualHWVersion = \"4\"\n"
    "ddb.geometry.cylinders = \"203\"\n"
    "ddb.geometry.heads = \"16\"\n"
    "ddb.geometry.sectors = \"63\"\n"
    "ddb.adapterType = \"ide\"\n"
    "ddb.toolsVersion = \"2147483647\"\n";

Descriptor parse_ok(std::string_view text) {
  auto r = Descriptor::parse(text, "t.vmdk");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : Descriptor{};
}

void expect_inval(std::string_view text, const std::string& needle) {
  SCOPED_TRACE(std::string(text.substr(0, 200)));
  auto r = Descriptor::parse(text, "bad.vmdk");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_DISK_INVAL);
  EXPECT_NE(r.error().message.find("bad.vmdk"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

}  // namespace

TEST(VmdkDescriptor, ParsesQemuTemplate) {
  Descriptor d = parse_ok(kQemuFlat);
  EXPECT_EQ(d.cid, 0x7ae03aeeu);
  EXPECT_EQ(d.parent_cid, vix::vmdk::kNoParentCid);
  EXPECT_EQ(d.create_type, "monolithicFlat");
  EXPECT_TRUE(d.parent_file_name_hint.empty());
  ASSERT_EQ(d.extents.size(), 1u);
  EXPECT_EQ(d.extents[0].access, "RW");
  EXPECT_EQ(d.extents[0].sectors, 204800u);
  EXPECT_EQ(d.extents[0].type, "FLAT");
  EXPECT_EQ(d.extents[0].file, "x-flat.vmdk");
  EXPECT_TRUE(d.extents[0].has_offset);
  EXPECT_EQ(d.extents[0].offset, 0u);
  ASSERT_EQ(d.ddb.size(), 6u);
  EXPECT_EQ(d.ddb[1].first, "ddb.geometry.cylinders");
  EXPECT_EQ(d.ddb_value("adapterType"), "ide");
  EXPECT_EQ(d.ddb_value("ddb.geometry.heads"), "16");
  EXPECT_EQ(d.ddb_value("uuid", "none"), "none");
  EXPECT_EQ(d.total_sectors(), 204800u);
}

TEST(VmdkDescriptor, RenderIsQemuTemplateByteForByte) {
  Descriptor d = parse_ok(kQemuFlat);
  EXPECT_EQ(d.render(), kQemuFlat);
}

TEST(VmdkDescriptor, RenderMatchesQemuImgCreateOutput) {
  vixtest::TempDir dir;
  for (std::string sub : {"monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"}) {
    std::string f = dir.file(sub + ".vmdk");
    vixtest::run_ok("qemu-img create -q -f vmdk -o subformat=" + sub + " " + f + " 5000M");
    auto bytes = vixtest::read_file(f);
    std::string text(bytes.begin(), bytes.end());
    Descriptor d = parse_ok(text);
    EXPECT_EQ(d.create_type, sub);
    EXPECT_EQ(d.total_sectors(), 5000u * 2048);
    EXPECT_EQ(d.render(), text) << sub;
  }
}

TEST(VmdkDescriptor, ChildTemplateHasNoBlankLineAfterHint) {
  vixtest::TempDir dir;
  vixtest::run_ok("cd " + dir.path() +
                  " && qemu-img create -q -f vmdk b.vmdk 10M && "
                  "qemu-img create -q -f vmdk -b b.vmdk -F vmdk c.vmdk");
  auto bytes = vixtest::read_file(dir.file("c.vmdk"));
  ASSERT_GE(bytes.size(), 512u + 10240u);
  std::string embedded(bytes.begin() + 512, bytes.begin() + 512 + 10240);
  Descriptor d = parse_ok(embedded);
  EXPECT_EQ(d.parent_file_name_hint, "b.vmdk");
  EXPECT_NE(d.parent_cid, vix::vmdk::kNoParentCid);
  std::string text = embedded.substr(0, embedded.find('\0'));
  EXPECT_EQ(d.render(), text);
  EXPECT_NE(text.find("parentFileNameHint=\"b.vmdk\"\n# Extent description\n"), std::string::npos);
}

TEST(VmdkDescriptor, ParentCidBeforeCidIsNotConfused) {
  Descriptor d = parse_ok(
      "parentCID=11111111\nCID=22222222\ncreateType=\"monolithicFlat\"\n"
      "RW 8 FLAT \"a\" 0\n");
  EXPECT_EQ(d.cid, 0x22222222u);
  EXPECT_EQ(d.parent_cid, 0x11111111u);
}

TEST(VmdkDescriptor, CidIsUnpaddedHexAndCaseInsensitive) {
  Descriptor d = parse_ok("CID=Ab\nparentCID=0\n");
  EXPECT_EQ(d.cid, 0xabu);
  EXPECT_EQ(d.parent_cid, 0u);
  EXPECT_EQ(vix::vmdk::format_cid(0xab), "ab");
  EXPECT_EQ(vix::vmdk::format_cid(0x0000ff01), "ff01");
}

TEST(VmdkDescriptor, MissingParentCidMeansNoParent) {
  Descriptor d = parse_ok("CID=1\n");
  EXPECT_EQ(d.parent_cid, vix::vmdk::kNoParentCid);
}

TEST(VmdkDescriptor, CrlfTabsQuotedSpacesAndOffsets) {
  Descriptor d = parse_ok(
      "# Disk DescriptorFile\r\nversion=1\r\nCID=fffffffe\r\nparentCID=ffffffff\r\n"
      "createType=\"twoGbMaxExtentFlat\"\r\n\r\n"
      "RW\t2048\tFLAT\t\"my disk-f001.vmdk\"\t100\r\n"
      "RW 4096 FLAT \"/abs/path/x y.raw\" 0\r\n"
      "ddb.adapterType=\"lsilogic\"\r\n");
  EXPECT_EQ(d.cid, 0xfffffffeu);
  EXPECT_EQ(d.create_type, "twoGbMaxExtentFlat");
  ASSERT_EQ(d.extents.size(), 2u);
  EXPECT_EQ(d.extents[0].file, "my disk-f001.vmdk");
  EXPECT_EQ(d.extents[0].offset, 100u);
  EXPECT_EQ(d.extents[1].file, "/abs/path/x y.raw");
  EXPECT_EQ(d.ddb_value("adapterType"), "lsilogic");
}

TEST(VmdkDescriptor, ZeroRdonlyNoaccessAndVmfsExtentsKept) {
  Descriptor d = parse_ok(
      "CID=1\nparentCID=ffffffff\ncreateType=\"vmfs\"\n"
      "RDONLY 10 FLAT \"a\" 0\nNOACCESS 20 SPARSE \"b\"\nRW 30 ZERO\nRW 40 VMFS \"c-flat.vmdk\"\n"
      "RW 50 VMFSSPARSE \"d-delta.vmdk\"\n");
  ASSERT_EQ(d.extents.size(), 5u);
  EXPECT_EQ(d.extents[0].access, "RDONLY");
  EXPECT_EQ(d.extents[1].access, "NOACCESS");
  EXPECT_EQ(d.extents[1].type, "SPARSE");
  EXPECT_EQ(d.extents[2].type, "ZERO");
  EXPECT_TRUE(d.extents[2].file.empty());
  EXPECT_EQ(d.extents[3].type, "VMFS");
  EXPECT_FALSE(d.extents[3].has_offset);
  EXPECT_EQ(d.extents[4].type, "VMFSSPARSE");
  EXPECT_EQ(d.total_sectors(), 150u);
}

TEST(VmdkDescriptor, BlankLinesDoNotDuplicateExtents) {
  Descriptor d = parse_ok("CID=1\nparentCID=ffffffff\n\n\n   \nRW 2048 FLAT \"data.raw\" 0\n");
  EXPECT_EQ(d.extents.size(), 1u);
  EXPECT_EQ(d.total_sectors(), 2048u);
}

TEST(VmdkDescriptor, EmbeddedNulPaddingEndsText) {
  std::string text = "CID=5\nparentCID=ffffffff\nRW 8 SPARSE \"x.vmdk\"\n";
  text.append(1000, '\0');
  text += "RW 8 SPARSE \"ignored.vmdk\"\n";
  Descriptor d = parse_ok(text);
  EXPECT_EQ(d.extents.size(), 1u);
}

TEST(VmdkDescriptor, Rejections) {
  expect_inval("version=1\ncreateType=\"monolithicFlat\"\n", "no CID");
  expect_inval("CID=xyz\n", "line 1: CID 'xyz'");
  expect_inval("CID=123456789\n", "CID");
  expect_inval("CID=1\nparentCID=-1\n", "line 2: parentCID");
  expect_inval("CID=1\nRW -5 FLAT \"a\" 0\n", "line 2: extent size '-5'");
  expect_inval("CID=1\nRW 0 FLAT \"a\" 0\n", "extent size is 0");
  expect_inval("CID=1\nRW 99999999999999999999999 FLAT \"a\" 0\n", "extent size");
  expect_inval("CID=1\nRW 18014398509481985 FLAT \"a\" 0\n", "extent size");  // 2^54 + 1
  expect_inval("CID=1\nRW 10 FLAT \"a\" x\n", "offset 'x'");
  expect_inval("CID=1\nRW 10 FLAT \"a\" 18014398509481980\n", "overflows");
  expect_inval("CID=1\nRW 10 FLAT \"a\" 0 junk\n", "extra fields");
  expect_inval("CID=1\nRW 10 VMFS \"a\" 0\n", "unexpected offset");
  expect_inval("CID=1\nRW 10 SPARSE \"a\" 7\n", "unexpected offset");
  expect_inval("CID=1\nRW 10 FLAT \"a\n", "closing quote");
  expect_inval("CID=1\nRW 10 FLAT \"\" 0\n", "empty extent file name");
  expect_inval("CID=1\nRW 10 FLAT\n", "without a file");
  expect_inval("CID=1\nRW 10 ZERO \"a\"\n", "ZERO extent with a file");
  expect_inval("CID=1\nRW 10\n", "no type");
  // Total size overflow spread over several extents.
  std::string many = "CID=1\n";
  for (int i = 0; i < 3; ++i) many += "RW 9007199254740992 ZERO\n";  // 3 * 2^53
  expect_inval(many, "line 4: total extent size");
}

TEST(VmdkDescriptor, BoundsTextSizeAndExtentCount) {
  std::string big = "CID=1\n" + std::string((1 << 20), '#');
  expect_inval(big, "1 MiB");
  std::string lots = "CID=1\n";
  for (int i = 0; i < 10001; ++i) lots += "RW 1 ZERO\n";
  ASSERT_LT(lots.size(), size_t{1} << 20);
  expect_inval(lots, "line 10002: more than 10000 extents");
  std::string ok = "CID=1\n";
  for (int i = 0; i < 10000; ++i) ok += "RW 1 ZERO\n";
  EXPECT_EQ(parse_ok(ok).extents.size(), 10000u);
}

TEST(VmdkDescriptor, GarbageTextIsAnErrorNotACrash) {
  std::string g;
  for (int i = 0; i < 5000; ++i) g += static_cast<char>((i * 7919 + 13) % 251 + 1);
  auto r = Descriptor::parse(g, "g.vmdk");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_DISK_INVAL);
}

TEST(VmdkDescriptor, RewriteCidKeepsEveryOtherLine) {
  std::string text =
      "# Disk DescriptorFile\nversion=1\nCID=12345678\nfoo=bar\nparentCID=ffffffff\n"
      "createType=\"monolithicFlat\"\n";
  auto r = vix::vmdk::rewrite_cid(text, 0xab, "t.vmdk");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r,
            "# Disk DescriptorFile\nversion=1\nCID=ab\nfoo=bar\nparentCID=ffffffff\n"
            "createType=\"monolithicFlat\"\n");
  // parentCID first: only the CID line changes.
  auto r2 = vix::vmdk::rewrite_cid("parentCID=1\r\nCID=2\r\nx=y\r\n", 0xdeadbeef, "t.vmdk");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2, "parentCID=1\r\nCID=deadbeef\r\nx=y\r\n");
  // NUL padding is dropped from the result.
  std::string padded = "CID=1\nparentCID=ffffffff\n" + std::string(100, '\0');
  auto r3 = vix::vmdk::rewrite_cid(padded, 0x10, "t.vmdk");
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(*r3, "CID=10\nparentCID=ffffffff\n");
  auto bad = vix::vmdk::rewrite_cid("parentCID=1\n", 1, "t.vmdk");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, VIX_E_DISK_INVAL);
  EXPECT_NE(bad.error().message.find("t.vmdk"), std::string::npos);
}

TEST(VmdkDescriptor, RewriteCidOfQemuFileStillOpensInQemu) {
  vixtest::TempDir dir;
  std::string f = dir.file("x.vmdk");
  vixtest::run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + f + " 1M");
  auto bytes = vixtest::read_file(f);
  auto r = vix::vmdk::rewrite_cid(std::string(bytes.begin(), bytes.end()), 0x1234abcd, f);
  ASSERT_TRUE(r.ok());
  vixtest::write_file(f, *r);
  vixtest::run_ok("qemu-img info " + f);
  auto d = Descriptor::parse(*r, f);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->cid, 0x1234abcdu);
}

TEST(VmdkDescriptor, SetDdbValueReplacesOrAppends) {
  auto r = vix::vmdk::set_ddb_value(kQemuFlat, "adapterType", "lsilogic", "t.vmdk");
  ASSERT_TRUE(r.ok());
  std::string expect = kQemuFlat;
  expect.replace(expect.find("\"ide\""), 5, "\"lsilogic\"");
  EXPECT_EQ(*r, expect);

  auto r2 = vix::vmdk::set_ddb_value(kQemuFlat, "ddb.uuid", "60 00 C2 9a", "t.vmdk");
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(*r2, std::string(kQemuFlat) + "ddb.uuid = \"60 00 C2 9a\"\n");
  auto d = Descriptor::parse(*r2, "t.vmdk");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ddb_value("uuid"), "60 00 C2 9a");

  // Inserted after the last ddb line even when other lines follow; CRLF kept.
  auto r3 = vix::vmdk::set_ddb_value("CID=1\r\nddb.a = \"1\"\r\n# tail\r\n", "b", "2", "t.vmdk");
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(*r3, "CID=1\r\nddb.a = \"1\"\r\nddb.b = \"2\"\r\n# tail\r\n");
  // No DDB at all, no final newline.
  auto r4 = vix::vmdk::set_ddb_value("CID=1", "x", "y", "t.vmdk");
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(*r4, "CID=1\nddb.x = \"y\"\n");

  auto bad = vix::vmdk::set_ddb_value(kQemuFlat, "x", "a\"b", "t.vmdk");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, VIX_E_INVALID_ARG);
  auto bad2 = vix::vmdk::set_ddb_value(kQemuFlat, "x\ny", "v", "t.vmdk");
  ASSERT_FALSE(bad2.ok());
}

TEST(VmdkDescriptor, NewContentIdAvoidsReservedValues) {
  std::set<uint32_t> seen;
  for (int i = 0; i < 2000; ++i) {
    uint32_t c = vix::vmdk::new_content_id();
    EXPECT_NE(c, 0xffffffffu);
    EXPECT_NE(c, 0xfffffffeu);
    seen.insert(c);
  }
  EXPECT_GT(seen.size(), 1990u);
}
