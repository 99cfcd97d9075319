// vmdk::create / create_child checked against qemu-img as the oracle: info agrees, check is clean,
// qemu-io can write and read back, and monolithicSparse files match qemu-img create byte for byte
// (apart from the random CID).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "support/fixtures.h"
#include "vmdk/descriptor.h"
#include "vmdk/vmdk.h"

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;

namespace {

constexpr uint64_t kMiB = 2048;  // sectors

vix::Result<void> make(const std::string& path, VixDiskLibDiskType type, uint64_t sectors,
                       VixDiskLibAdapterType adapter = VIXDISKLIB_ADAPTER_IDE, uint16_t hw = 4) {
  auto opener = vix::make_local_opener();
  vix::vmdk::CreateOptions o;
  o.type = type;
  o.capacity_sectors = sectors;
  o.adapter = adapter;
  o.hw_version = hw;
  return vix::vmdk::create(*opener, path, o);
}

void make_ok(const std::string& path, VixDiskLibDiskType type, uint64_t sectors,
             VixDiskLibAdapterType adapter = VIXDISKLIB_ADAPTER_IDE, uint16_t hw = 4) {
  auto r = make(path, type, sectors, adapter, hw);
  ASSERT_TRUE(r.ok()) << r.error().message;
}

// A string value of `"key": "value"` or a number of `"key": 123` in qemu-img's JSON.
std::string json_field(const std::string& json, const std::string& key) {
  auto k = json.find("\"" + key + "\": ");
  if (k == std::string::npos) return "";
  auto v = k + key.size() + 4;
  if (json[v] == '"') return json.substr(v + 1, json.find('"', v + 1) - v - 1);
  auto end = json.find_first_of(",\n}", v);
  return json.substr(v, end - v);
}

std::string sector0(const std::string& path) {
  auto bytes = vixtest::read_file(path);
  bytes.resize(512);
  return std::string(bytes.begin(), bytes.end());
}

std::string embedded_text(const std::string& path) {
  auto bytes = vixtest::read_file(path);
  if (bytes.size() < 512 + 10240) return "";
  std::string t(bytes.begin() + 512, bytes.begin() + 512 + 10240);
  return t.substr(0, t.find('\0'));
}

uint32_t cid_of(const std::string& text) {
  auto d = vix::vmdk::Descriptor::parse(text, "cid");
  EXPECT_TRUE(d.ok());
  return d.ok() ? d->cid : 0;
}

// Our descriptor with qemu's CID substituted, so the rest can be compared byte for byte.
std::string with_cid(const std::string& text, uint32_t cid) {
  auto r = vix::vmdk::rewrite_cid(text, cid, "x");
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : "";
}

void expect_qemu_clean(const std::string& path, const std::string& create_type, uint64_t bytes) {
  std::string json = run_ok("qemu-img info --output=json " + sh_quote(path));
  EXPECT_EQ(json_field(json, "format"), "vmdk") << json;
  EXPECT_EQ(json_field(json, "virtual-size"), std::to_string(bytes)) << json;
  EXPECT_EQ(json_field(json, "create-type"), create_type) << json;
  auto check = run("qemu-img check " + sh_quote(path));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("No errors were found"), std::string::npos) << check.output;
  auto io =
      run("qemu-io -f vmdk -c 'write -P 0x5a 0 64k' -c 'read -P 0x5a 0 64k' " + sh_quote(path));
  EXPECT_EQ(io.exit_code, 0) << io.output;
  EXPECT_EQ(io.output.find("fail"), std::string::npos) << io.output;
  EXPECT_EQ(io.output.find("Pattern verification failed"), std::string::npos) << io.output;
  auto after = run("qemu-img check " + sh_quote(path));
  EXPECT_EQ(after.exit_code, 0) << after.output;
}

}  // namespace

TEST(VmdkCreate, MonolithicSparseMatchesQemuImgByteForByte) {
  vixtest::TempDir dir;
  for (uint64_t bytes : {uint64_t{100} << 20, uint64_t{1024}, uint64_t{10} << 30}) {
    SCOPED_TRACE(bytes);
    std::string ours = dir.file("o" + std::to_string(bytes) + ".vmdk");
    std::string theirs = dir.file("q" + std::to_string(bytes) + ".vmdk");
    make_ok(ours, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, bytes / 512);
    run_ok("qemu-img create -q -f vmdk " + theirs + " " + std::to_string(bytes));
    auto a = vixtest::read_file(ours), b = vixtest::read_file(theirs);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_TRUE(std::equal(a.begin(), a.begin() + 512, b.begin())) << "header differs";
    EXPECT_TRUE(std::equal(a.begin() + 512 + 10240, a.end(), b.begin() + 512 + 10240))
        << "tables differ";
    // Same name inside the descriptor: compare with the file names swapped in.
    std::string ot = embedded_text(ours), qt = embedded_text(theirs);
    auto pos = ot.find(std::filesystem::path(ours).filename().string());
    ASSERT_NE(pos, std::string::npos);
    ot.replace(pos, std::filesystem::path(ours).filename().string().size(),
               std::filesystem::path(theirs).filename().string());
    EXPECT_EQ(with_cid(ot, cid_of(qt)), qt);
  }
}

TEST(VmdkCreate, MonolithicSparseHeaderMd5IsTheReferenceVector) {
  vixtest::TempDir dir;
  std::string f = dir.file("x.vmdk");
  make_ok(f, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, 100 * kMiB);
  std::string md5 = run_ok("head -c 512 " + f + " | md5sum");
  EXPECT_EQ(md5.substr(0, 32),
            "55b3a71043e7a773e39185aa363a9158");  // docs/reference/vmdk-format.md §14 row 1
  EXPECT_EQ(vixtest::read_file(f).size(), 65536u);
  expect_qemu_clean(f, "monolithicSparse", 100u << 20);
}

TEST(VmdkCreate, StreamOptimizedMatchesQemuImg) {
  vixtest::TempDir dir;
  std::string f = dir.file("x.vmdk"), q = dir.file("q.vmdk");
  make_ok(f, VIXDISKLIB_DISK_STREAM_OPTIMIZED, 100 * kMiB);
  std::string md5 = run_ok("head -c 512 " + f + " | md5sum");
  EXPECT_EQ(md5.substr(0, 32), "99c783686e569a4f00fb788cfb5440c5");  // §14 row 2
  run_ok("qemu-img create -q -f vmdk -o subformat=streamOptimized " + q + " 100M");
  auto a = vixtest::read_file(f), b = vixtest::read_file(q);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin() + 512 + 10240, a.end(), b.begin() + 512 + 10240));
  std::string ot = embedded_text(f), qt = embedded_text(q);
  ot.replace(ot.find("\"x.vmdk\""), 8, "\"q.vmdk\"");
  EXPECT_EQ(with_cid(ot, cid_of(qt)), qt);
  expect_qemu_clean(f, "streamOptimized", 100u << 20);
}

TEST(VmdkCreate, MonolithicFlat) {
  vixtest::TempDir dir;
  std::string f = dir.file("x.vmdk"), q = dir.file("q.vmdk");
  make_ok(f, VIXDISKLIB_DISK_MONOLITHIC_FLAT, 100 * kMiB);
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + q + " 100M");
  auto ours = vixtest::read_file(f), theirs = vixtest::read_file(q);
  std::string ot(ours.begin(), ours.end()), qt(theirs.begin(), theirs.end());
  ot.replace(ot.find("x-flat.vmdk"), 11, "q-flat.vmdk");
  EXPECT_EQ(with_cid(ot, cid_of(qt)), qt);
  EXPECT_EQ(std::filesystem::file_size(dir.file("x-flat.vmdk")), 100u << 20);
  expect_qemu_clean(f, "monolithicFlat", 100u << 20);
}

TEST(VmdkCreate, SplitSparseAndFlatDescriptorsMatchQemuImg) {
  vixtest::TempDir dir;
  const uint64_t bytes = uint64_t{5000} << 20;
  for (auto [type, sub, letter] :
       {std::tuple{VIXDISKLIB_DISK_SPLIT_SPARSE, "twoGbMaxExtentSparse", 's'},
        std::tuple{VIXDISKLIB_DISK_SPLIT_FLAT, "twoGbMaxExtentFlat", 'f'}}) {
    SCOPED_TRACE(sub);
    std::string f = dir.file(std::string("o") + letter + ".vmdk");
    std::string q = dir.file(std::string("q") + letter + ".vmdk");
    make_ok(f, type, bytes / 512);
    run_ok(std::string("qemu-img create -q -f vmdk -o subformat=") + sub + " " + q + " 5000M");
    auto ours = vixtest::read_file(f), theirs = vixtest::read_file(q);
    std::string ot(ours.begin(), ours.end()), qt(theirs.begin(), theirs.end());
    for (size_t p; (p = ot.find(std::string("\"o") + letter + "-")) != std::string::npos;)
      ot[p + 1] = 'q';
    EXPECT_EQ(with_cid(ot, cid_of(qt)), qt);
    for (int i = 1; i <= 3; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "-%c%03d.vmdk", letter, i);
      std::string oe = dir.file(std::string("o") + letter + name);
      std::string qe = dir.file(std::string("q") + letter + name);
      ASSERT_TRUE(std::filesystem::exists(oe)) << oe;
      EXPECT_EQ(std::filesystem::file_size(oe), std::filesystem::file_size(qe)) << oe;
      if (letter == 's') {
        EXPECT_EQ(vixtest::read_file(oe), vixtest::read_file(qe)) << oe;
      }
    }
    EXPECT_FALSE(
        std::filesystem::exists(dir.file(std::string("o") + letter + "-" + letter + "004.vmdk")));
    expect_qemu_clean(f, sub, bytes);
    // Across the 2 GiB extent boundary.
    auto io =
        run("qemu-io -f vmdk -c 'write -P 0x33 2147450880 64k' "
            "-c 'read -P 0x33 2147450880 64k' " +
            sh_quote(f));
    EXPECT_EQ(io.exit_code, 0) << io.output;
    EXPECT_EQ(io.output.find("fail"), std::string::npos) << io.output;
  }
}

TEST(VmdkCreate, SplitSparseSmallHasOneExtentAndZeroDescriptorArea) {
  vixtest::TempDir dir;
  std::string f = dir.file("x.vmdk");
  make_ok(f, VIXDISKLIB_DISK_SPLIT_SPARSE, 100 * kMiB);
  auto s1 = vixtest::read_file(dir.file("x-s001.vmdk"));
  ASSERT_EQ(s1.size(), 65536u);
  EXPECT_TRUE(std::all_of(s1.begin() + 512, s1.begin() + 21 * 512, [](uint8_t b) { return !b; }));
  EXPECT_EQ(run_ok("head -c 512 " + dir.file("x-s001.vmdk") + " | md5sum").substr(0, 32),
            "55b3a71043e7a773e39185aa363a9158");
  EXPECT_FALSE(std::filesystem::exists(dir.file("x-s002.vmdk")));
  expect_qemu_clean(f, "twoGbMaxExtentSparse", 100u << 20);
}

TEST(VmdkCreate, VmfsFlat) {
  vixtest::TempDir dir;
  std::string f = dir.file("v.vmdk");
  make_ok(f, VIXDISKLIB_DISK_VMFS_FLAT, 10 * kMiB);
  auto text = vixtest::read_file(f);
  std::string t(text.begin(), text.end());
  EXPECT_NE(t.find("createType=\"vmfs\"\n"), std::string::npos) << t;
  EXPECT_NE(t.find("RW 20480 VMFS \"v-flat.vmdk\"\n"), std::string::npos) << t;
  expect_qemu_clean(f, "vmfs", 10u << 20);
}

TEST(VmdkCreate, DdbAdapterGeometryAndHwVersion) {
  vixtest::TempDir dir;
  std::string f = dir.file("a.vmdk"), q = dir.file("q.vmdk");
  make_ok(f, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, uint64_t{100} << 21,
          VIXDISKLIB_ADAPTER_SCSI_LSILOGIC, 11);
  run_ok("qemu-img create -q -f vmdk -o adapter_type=lsilogic,hwversion=11 " + q + " 100G");
  EXPECT_EQ(sector0(f), sector0(q));
  std::string ot = embedded_text(f), qt = embedded_text(q);
  ot.replace(ot.find("\"a.vmdk\""), 8, "\"q.vmdk\"");
  EXPECT_EQ(with_cid(ot, cid_of(qt)), qt);
  auto d = vix::vmdk::Descriptor::parse(ot, f);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ddb_value("geometry.cylinders"), "13054");
  EXPECT_EQ(d->ddb_value("geometry.heads"), "255");
  EXPECT_EQ(d->ddb_value("virtualHWVersion"), "11");

  std::string b = dir.file("b.vmdk");
  make_ok(b, VIXDISKLIB_DISK_MONOLITHIC_FLAT, 10 * kMiB, VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC);
  auto bt = vixtest::read_file(b);
  std::string bs(bt.begin(), bt.end());
  EXPECT_NE(bs.find("ddb.adapterType = \"buslogic\""), std::string::npos);
  EXPECT_NE(bs.find("ddb.geometry.cylinders = \"1\""), std::string::npos);  // 20480/(63*255)
}

TEST(VmdkCreate, Errors) {
  vixtest::TempDir dir;
  std::string f = dir.file("e.vmdk");
  auto zero = make(f, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, 0);
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.error().code, VIX_E_INVALID_ARG);
  EXPECT_NE(zero.error().message.find(f), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(f));

  auto thin = make(f, VIXDISKLIB_DISK_VMFS_THIN, 2048);
  ASSERT_FALSE(thin.ok());
  EXPECT_EQ(thin.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_FALSE(std::filesystem::exists(f));

  auto adapter = make(f, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, 2048, VIXDISKLIB_ADAPTER_UNKNOWN);
  ASSERT_FALSE(adapter.ok());
  EXPECT_EQ(adapter.error().code, VIX_E_INVALID_ARG);

  auto huge = make(f, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, uint64_t{1} << 60);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, VIX_E_INVALID_ARG);
  EXPECT_FALSE(std::filesystem::exists(f));

  make_ok(f, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, 2048);
  auto before = vixtest::read_file(f);
  auto again = make(f, VIXDISKLIB_DISK_MONOLITHIC_FLAT, 2048);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, VIX_E_FILE_ALREADY_EXISTS);
  EXPECT_EQ(vixtest::read_file(f), before);
  EXPECT_FALSE(std::filesystem::exists(dir.file("e-flat.vmdk")));
}

TEST(VmdkCreate, ExistingExtentFileFailsAndRemovesPartialFiles) {
  vixtest::TempDir dir;
  std::string f = dir.file("p.vmdk");
  vixtest::write_file(dir.file("p-s002.vmdk"), std::string("keep me"));
  auto r = make(f, VIXDISKLIB_DISK_SPLIT_SPARSE, 5000 * kMiB);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_FILE_ALREADY_EXISTS);
  EXPECT_NE(r.error().message.find("p-s002.vmdk"), std::string::npos) << r.error().message;
  EXPECT_FALSE(std::filesystem::exists(f));
  EXPECT_FALSE(std::filesystem::exists(dir.file("p-s001.vmdk")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("p-s003.vmdk")));
  auto kept = vixtest::read_file(dir.file("p-s002.vmdk"));
  EXPECT_EQ(std::string(kept.begin(), kept.end()), "keep me");
}

TEST(VmdkCreate, FilesWithoutExtensionAndWithSpaces) {
  vixtest::TempDir dir;
  std::string f = dir.file("my disk");
  make_ok(f, VIXDISKLIB_DISK_MONOLITHIC_FLAT, 2048);
  EXPECT_TRUE(std::filesystem::exists(dir.file("my disk-flat")));
  expect_qemu_clean(f, "monolithicFlat", 1u << 20);
}

namespace {

vix::Result<void> child(const std::string& parent, const std::string& path,
                        VixDiskLibDiskType type = VIXDISKLIB_DISK_MONOLITHIC_SPARSE) {
  auto opener = vix::make_local_opener();
  return vix::vmdk::create_child(*opener, parent, path, type);
}

}  // namespace

TEST(VmdkCreateChild, MatchesQemuImgAndReadsParentData) {
  vixtest::TempDir dir;
  std::string base = dir.file("base.vmdk");
  run_ok("qemu-img create -q -f vmdk " + base +
         " 10M && qemu-io -f vmdk -c 'write -P 0xaa 0 128k' " + base);
  auto r = child(base, dir.file("delta.vmdk"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  run_ok("cd " + dir.path() + " && qemu-img create -q -f vmdk -b base.vmdk -F vmdk q.vmdk");
  std::string f = dir.file("delta.vmdk"), q = dir.file("q.vmdk");
  EXPECT_EQ(sector0(f), sector0(q));
  std::string ot = embedded_text(f), qt = embedded_text(q);
  ot.replace(ot.find("\"delta.vmdk\""), 12, "\"q.vmdk\"");
  EXPECT_EQ(with_cid(ot, cid_of(qt)), qt);
  auto d = vix::vmdk::Descriptor::parse(ot, f);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->parent_file_name_hint, "base.vmdk");
  EXPECT_EQ(d->parent_cid, cid_of(embedded_text(base)));

  auto io = run("qemu-io -f vmdk -c 'read -P 0xaa 0 128k' -c 'read -P 0 128k 64k' " + f);
  EXPECT_EQ(io.exit_code, 0) << io.output;
  EXPECT_EQ(io.output.find("fail"), std::string::npos) << io.output;
  std::string chain = run_ok("qemu-img info --backing-chain " + f);
  EXPECT_NE(chain.find("backing file: base.vmdk"), std::string::npos) << chain;
  EXPECT_NE(chain.find("image: " + base), std::string::npos) << chain;
  EXPECT_EQ(run("qemu-img check " + f).exit_code, 0);
  // Writes go to the child, the parent stays as it was.
  run_ok("qemu-io -f vmdk -c 'write -P 0x11 4096 512' " + f);
  auto io2 = run("qemu-io -f vmdk -c 'read -P 0xaa 0 4096' -c 'read -P 0x11 4096 512' " +
                 sh_quote(f) + " && qemu-io -f vmdk -c 'read -P 0xaa 0 128k' " + sh_quote(base));
  EXPECT_EQ(io2.exit_code, 0) << io2.output;
  EXPECT_EQ(io2.output.find("fail"), std::string::npos) << io2.output;
}

TEST(VmdkCreateChild, SplitSparseChildOfSplitParentInAnotherFolder) {
  vixtest::TempDir dir;
  std::filesystem::create_directory(dir.file("p"));
  std::filesystem::create_directory(dir.file("c"));
  std::string base = dir.file("p/base.vmdk");
  make_ok(base, VIXDISKLIB_DISK_SPLIT_SPARSE, uint64_t{3} << 21);  // 3 GiB: 2 extents
  run_ok("qemu-io -f vmdk -c 'write -P 0x42 2147418112 128k' " + base);
  std::string c = dir.file("c/child.vmdk");
  auto r = child(base, c, VIXDISKLIB_DISK_SPLIT_SPARSE);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto text = vixtest::read_file(c);
  auto d = vix::vmdk::Descriptor::parse(std::string(text.begin(), text.end()), c);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->create_type, "twoGbMaxExtentSparse");
  EXPECT_EQ(d->parent_file_name_hint, base);  // absolute: different folder
  ASSERT_EQ(d->extents.size(), 2u);
  EXPECT_EQ(d->extents[0].file, "child-s001.vmdk");
  EXPECT_EQ(d->total_sectors(), uint64_t{3} << 21);
  auto bt = vixtest::read_file(base);
  EXPECT_EQ(d->parent_cid, cid_of(std::string(bt.begin(), bt.end())));
  auto io = run("qemu-io -f vmdk -c 'read -P 0x42 2147418112 128k' " + c);
  EXPECT_EQ(io.exit_code, 0) << io.output;
  EXPECT_EQ(io.output.find("fail"), std::string::npos) << io.output;
  std::string json = run_ok("qemu-img info --output=json " + c);
  EXPECT_EQ(json_field(json, "virtual-size"), std::to_string(uint64_t{3} << 30));
}

TEST(VmdkCreateChild, ChainOfThreeWithSameFolderHints) {
  vixtest::TempDir dir;
  run_ok("cd " + dir.path() +
         " && qemu-img create -q -f vmdk -o subformat=monolithicFlat b.vmdk 4M"
         " && qemu-io -f vmdk -c 'write -P 0x01 0 1M' b.vmdk");
  // Same-folder parents are recorded by bare name, so the chain survives moving the folder.
  ASSERT_TRUE(child(dir.file("b.vmdk"), dir.file("c1.vmdk")).ok());
  run_ok("qemu-io -f vmdk -c 'write -P 0x02 1M 1M' " + dir.file("c1.vmdk"));
  auto r = child(dir.file("c1.vmdk"), dir.file("c2.vmdk"), VIXDISKLIB_DISK_SPLIT_SPARSE);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto io =
      run("qemu-io -f vmdk -c 'read -P 0x01 0 1M' -c 'read -P 0x02 1M 1M' "
          "-c 'read -P 0 2M 2M' " +
          dir.file("c2.vmdk"));
  EXPECT_EQ(io.exit_code, 0) << io.output;
  EXPECT_EQ(io.output.find("fail"), std::string::npos) << io.output;
  std::string chain = run_ok("qemu-img info --backing-chain " + dir.file("c2.vmdk"));
  EXPECT_NE(chain.find("backing file: c1.vmdk"), std::string::npos) << chain;
  EXPECT_NE(chain.find("backing file: b.vmdk"), std::string::npos) << chain;
}

TEST(VmdkCreateChild, Errors) {
  vixtest::TempDir dir;
  auto missing = child(dir.file("nope.vmdk"), dir.file("c.vmdk"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, VIX_E_FILE_NOT_FOUND);
  EXPECT_NE(missing.error().message.find("nope.vmdk"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.vmdk")));

  std::string base = dir.file("b.vmdk");
  make_ok(base, VIXDISKLIB_DISK_MONOLITHIC_SPARSE, 2048);
  auto flat = child(base, dir.file("c.vmdk"), VIXDISKLIB_DISK_MONOLITHIC_FLAT);
  ASSERT_FALSE(flat.ok());
  EXPECT_EQ(flat.error().code, VIX_E_NOT_SUPPORTED);

  ASSERT_TRUE(child(base, dir.file("c.vmdk")).ok());
  auto again = child(base, dir.file("c.vmdk"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, VIX_E_FILE_ALREADY_EXISTS);

  vixtest::write_file(dir.file("garbage.vmdk"), std::string("hello world\n"));
  auto garbage = child(dir.file("garbage.vmdk"), dir.file("g.vmdk"));
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().code, VIX_E_DISK_INVAL);
  EXPECT_NE(garbage.error().message.find("garbage.vmdk"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.file("g.vmdk")));
}
