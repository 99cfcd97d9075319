// The vixdisk tool end to end: runs the built binary on disks made by qemu-img and compares
// what it prints and writes with what qemu-img says about the same disks.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "support/fixtures.h"

namespace {

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;

const std::string kVixdisk = VIXFS_VIXDISK;

class VixdiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kVixdisk.empty()) GTEST_SKIP() << "vixdisk is not built in this configuration";
  }
  std::string tool(const std::string& args) const { return sh_quote(kVixdisk) + " " + args; }
  std::string q(const std::string& name) const { return sh_quote(dir_.file(name)); }
  TempDir dir_;
};

// Minimal field lookups in the JSON that qemu-img and vixdisk print (std::regex is avoided:
// GCC 12 with ASan warns inside <regex>, which -Werror turns into a build failure).
size_t value_pos(const std::string& json, const std::string& key) {
  size_t p = json.find("\"" + key + "\":");
  if (p == std::string::npos) return p;
  p += key.size() + 3;
  while (p < json.size() && json[p] == ' ') ++p;
  return p;
}

uint64_t json_number(const std::string& json, const std::string& key) {
  size_t p = value_pos(json, key);
  if (p == std::string::npos || p >= json.size() || !isdigit(static_cast<unsigned char>(json[p]))) {
    ADD_FAILURE() << "no number " << key << " in:\n" << json;
    return UINT64_MAX;
  }
  return std::stoull(json.substr(p));
}

std::string json_text(const std::string& json, const std::string& key) {
  size_t p = value_pos(json, key);
  size_t close = p == std::string::npos ? p : json.find('"', p + 1);
  if (p == std::string::npos || json[p] != '"' || close == std::string::npos) {
    ADD_FAILURE() << "no string " << key << " in:\n" << json;
    return "";
  }
  return json.substr(p + 1, close - p - 1);
}

std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (line.find(needle) != std::string::npos) out.push_back(line);
    pos = nl + 1;
  }
  return out;
}

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;  // (start, length) in bytes

void add_merged(Ranges* r, uint64_t start, uint64_t length) {
  if (!r->empty() && r->back().first + r->back().second == start)
    r->back().second += length;
  else
    r->emplace_back(start, length);
}

// The data-bearing ranges of `qemu-img map --output=json` (one entry per line).
Ranges qemu_data_ranges(const std::string& json) {
  Ranges r;
  for (const auto& line : lines_with(json, "\"start\":")) {
    if (line.find("\"data\": true") != std::string::npos)
      add_merged(&r, json_number(line, "start"), json_number(line, "length"));
  }
  return r;
}

// The extents of `vixdisk map --json` (one per line).
Ranges vixdisk_ranges(const std::string& json) {
  Ranges r;
  for (const auto& line : lines_with(json, "\"start\":"))
    add_merged(&r, json_number(line, "start"), json_number(line, "length"));
  return r;
}

// qemu-img's raw image of disk, as a file (comparisons use cmp: reading 256 MiB into vectors
// in a Debug build takes far longer than the tool itself).
std::string oracle_raw(const std::string& disk) {
  std::string raw = disk + ".oracle.raw";
  run_ok("qemu-img convert -f vmdk -O raw " + sh_quote(disk) + " " + sh_quote(raw));
  return raw;
}

bool same_file(const std::string& a, const std::string& b) {
  return run("cmp " + sh_quote(a) + " " + sh_quote(b)).exit_code == 0;
}

// A 64 MiB monolithicSparse disk with data in a few places, some of it unaligned to grains.
void make_patterned(const std::string& path, const std::string& subformat = "monolithicSparse") {
  run_ok("qemu-img create -q -f vmdk -o subformat=" + subformat + " " + sh_quote(path) + " 64M");
  run_ok(
      "qemu-io -f vmdk -c 'write -P 0xab 1M 128K' -c 'write -P 0x5c 40M 4K' "
      "-c 'write -P 0x01 63M 1M' -c 'write -P 0x77 5000k 3k' " +
      sh_quote(path) + " >/dev/null");
}

TEST_F(VixdiskTest, InfoJsonMatchesQemuImgInfo) {
  for (const char* sub :
       {"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    std::string disk = dir_.file(std::string(sub) + ".vmdk");
    run_ok("qemu-img create -q -f vmdk -o subformat=" + std::string(sub) +
           ",adapter_type=lsilogic " + sh_quote(disk) + " 10M");
    std::string qemu = run_ok("qemu-img info --output=json " + sh_quote(disk));
    std::string ours = run_ok(tool("info --json " + sh_quote(disk)));
    EXPECT_EQ(json_number(ours, "capacity_bytes"), json_number(qemu, "virtual-size"));
    EXPECT_EQ(json_number(ours, "capacity_sectors") * 512, json_number(qemu, "virtual-size"));
    EXPECT_EQ(json_text(ours, "create_type"), json_text(qemu, "create-type"));
    EXPECT_EQ(json_text(ours, "adapter"), "lsilogic");
    EXPECT_EQ(json_text(ours, "transport"), "file");
    EXPECT_EQ(json_number(ours, "num_links"), 1u);
    EXPECT_EQ(json_text(ours, "ddb.adapterType"), "lsilogic");
  }
}

TEST_F(VixdiskTest, InfoTextNamesCapacity) {
  std::string disk = dir_.file("t.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(disk) + " 3M");
  std::string out = run_ok(tool("info " + sh_quote(disk) + " 2>/dev/null"));
  EXPECT_NE(out.find("3145728 bytes (6144 sectors"), std::string::npos) << out;
}

TEST_F(VixdiskTest, CatEqualsQemuRaw) {
  for (const char* sub : {"monolithicSparse", "streamOptimized", "monolithicFlat"}) {
    SCOPED_TRACE(sub);
    std::string disk = dir_.file(std::string("p-") + sub + ".vmdk");
    if (std::string(sub) == "streamOptimized") {
      // qemu cannot write into an existing streamOptimized disk: convert a patterned one.
      make_patterned(dir_.file("src.vmdk"));
      run_ok("qemu-img convert -O vmdk -o subformat=streamOptimized " + q("src.vmdk") + " " +
             sh_quote(disk));
    } else {
      make_patterned(disk, sub);
    }
    std::string raw = oracle_raw(disk);
    std::string out = dir_.file("out.raw");
    run_ok(tool("cat " + sh_quote(disk) + " > " + sh_quote(out)));
    EXPECT_TRUE(same_file(out, raw)) << "stdout bytes differ from qemu-img's";
    run_ok(tool("cat " + sh_quote(disk) + " -o " + sh_quote(out)));
    EXPECT_TRUE(same_file(out, raw)) << "-o bytes differ from qemu-img's";
    // Piped through another program, as `vixdisk cat | sha256sum` is used.
    EXPECT_EQ(run_ok(tool("cat " + sh_quote(disk) + " | sha256sum")),
              run_ok("sha256sum < " + sh_quote(raw)));
  }
}

TEST_F(VixdiskTest, CatRangeIsTheSameSlice) {
  std::string disk = dir_.file("r.vmdk");
  make_patterned(disk);
  std::string raw = oracle_raw(disk);
  // Unaligned start and length crossing a grain and the 1 MiB request boundary.
  const uint64_t off = 5000 * 1024 + 777, len = 1536 * 1024 + 5;
  std::string out = dir_.file("slice");
  run_ok(tool("cat --offset " + std::to_string(off) + " --length " + std::to_string(len) + " " +
              sh_quote(disk) + " -o " + sh_quote(out)));
  struct stat st {};
  ASSERT_EQ(stat(out.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), len);
  EXPECT_EQ(run("cmp -n " + std::to_string(len) + " " + sh_quote(out) + " " + sh_quote(raw) +
                " 0 " + std::to_string(off))
                .exit_code,
            0);
  // Past the end is a usage error, not a short read.
  EXPECT_EQ(run(tool("cat --offset 63M --length 2M " + sh_quote(disk) + " -o " + sh_quote(out)))
                .exit_code,
            1);
}

TEST_F(VixdiskTest, CatToFileIsSparse) {
  std::string disk = dir_.file("s.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(disk) + " 256M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x42 100M 64K' " + sh_quote(disk) + " >/dev/null");
  std::string out = dir_.file("s.raw");
  run_ok(tool("cat " + sh_quote(disk) + " -o " + sh_quote(out)));
  struct stat st {};
  ASSERT_EQ(stat(out.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 256u << 20);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 4u << 20) << "output is not sparse";
  EXPECT_TRUE(same_file(out, oracle_raw(disk)));
}

TEST_F(VixdiskTest, MapAgreesWithQemuImgMap) {
  std::string disk = dir_.file("m.vmdk");
  make_patterned(disk);
  Ranges qemu = qemu_data_ranges(run_ok("qemu-img map --output=json " + sh_quote(disk)));
  std::string ours = run_ok(tool("map --json " + sh_quote(disk) + " 2>/dev/null"));
  ASSERT_FALSE(qemu.empty());
  EXPECT_EQ(vixdisk_ranges(ours), qemu) << ours;
  uint64_t total = 0;
  for (auto& [s, l] : qemu) total += l;
  EXPECT_EQ(json_number(ours, "allocated_bytes"), total);
  // Text output carries sector numbers of the same extents.
  std::string text = run_ok(tool("map " + sh_quote(disk) + " 2>/dev/null"));
  EXPECT_NE(text.find(std::to_string(qemu[0].first / 512)), std::string::npos) << text;
}

TEST_F(VixdiskTest, CreateThenQemuImgCheckIsClean) {
  for (const char* sub : {"monolithicSparse", "twoGbMaxExtentSparse", "streamOptimized",
                          "monolithicFlat", "twoGbMaxExtentFlat"}) {
    SCOPED_TRACE(sub);
    std::string disk = dir_.file(std::string("c-") + sub + ".vmdk");
    run_ok(tool("create " + sh_quote(disk) + " --size 20M --adapter buslogic --type " + sub));
    std::string info = run_ok("qemu-img info --output=json " + sh_quote(disk));
    EXPECT_EQ(json_number(info, "virtual-size"), 20u << 20);
    EXPECT_EQ(json_text(info, "create-type"), sub);
    auto check = run("qemu-img check " + sh_quote(disk));
    // Flat disks have nothing to check (qemu-img says so with exit 63); others must be clean.
    EXPECT_TRUE(check.exit_code == 0 || check.exit_code == 63) << check.output;
    std::string ours = run_ok(tool("info --json " + sh_quote(disk)));
    EXPECT_EQ(json_text(ours, "adapter"), "buslogic");
  }
  // Creating over an existing disk fails with a library error, leaving it alone.
  auto again = run(tool("create " + q("c-monolithicSparse.vmdk") + " --size 1M"));
  EXPECT_EQ(again.exit_code, 2) << again.output;
}

TEST_F(VixdiskTest, CreateChildReadsThroughToParent) {
  std::string parent = dir_.file("base.vmdk"), child = dir_.file("child.vmdk");
  make_patterned(parent);
  run_ok(tool("create " + sh_quote(child) + " --parent " + sh_quote(parent)));
  EXPECT_EQ(run("qemu-img check " + sh_quote(child)).exit_code, 0);
  std::string info = run_ok("qemu-img info --output=json " + sh_quote(child));
  EXPECT_NE(info.find("base.vmdk"), std::string::npos) << info;
  run_ok("qemu-io -f vmdk -c 'write -P 0xee 2M 64K' " + sh_quote(child) + " >/dev/null");
  std::string out = dir_.file("child.raw");
  run_ok(tool("cat " + sh_quote(child) + " -o " + sh_quote(out)));
  EXPECT_TRUE(same_file(out, oracle_raw(child)));
  std::string ours = run_ok(tool("info --json " + sh_quote(child)));
  EXPECT_EQ(json_number(ours, "num_links"), 2u);
}

TEST_F(VixdiskTest, BadUsageExitsOne) {
  std::string disk = dir_.file("u.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(disk) + " 1M");
  for (const std::string& args :
       {std::string(""), std::string("frobnicate ") + sh_quote(disk),
        std::string("info --no-such-option ") + sh_quote(disk), std::string("info"),
        std::string("cat ") + sh_quote(disk) + " --offset 12Q",
        std::string("create ") + q("n.vmdk") + " --size 10X",
        std::string("create ") + q("n.vmdk") + " --size 1M --type bogus",
        std::string("create ") + q("n.vmdk") + " --size 1M --parent " + sh_quote(disk),
        std::string("info ") + sh_quote(disk) + " --config"}) {
    auto r = run(tool(args));
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("vixdisk"), std::string::npos) << r.output;
  }
  EXPECT_EQ(run(tool("--help")).exit_code, 0);
}

TEST_F(VixdiskTest, MissingOrCorruptDiskExitsTwoWithMessage) {
  auto missing = run(tool("info " + q("nope.vmdk")));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("vixdisk: open "), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("nope.vmdk"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("(VixError "), std::string::npos) << missing.output;

  vixtest::write_file(dir_.file("junk.vmdk"), std::string(4096, 'x'));
  for (const char* cmd : {"info", "cat", "map", "bench"}) {
    auto r = run(tool(std::string(cmd) + " " + q("junk.vmdk") + " > /dev/null"));
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("junk.vmdk"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("(VixError "), std::string::npos) << r.output;
  }
}

TEST_F(VixdiskTest, OutputErrorExitsThree) {
  std::string disk = dir_.file("o.vmdk");
  make_patterned(disk);
  auto r = run(tool("cat " + sh_quote(disk) + " -o " + q("no/such/dir/out.raw")));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  if (access("/dev/full", W_OK) == 0) {
    auto full = run(tool("cat " + sh_quote(disk) + " > /dev/full"));
    EXPECT_EQ(full.exit_code, 3) << full.output;
  }
}

TEST_F(VixdiskTest, BenchPrintsNumbers) {
  std::string disk = dir_.file("b.vmdk");
  make_patterned(disk);
  std::string out = run_ok(tool("bench --random-count 200 --json " + sh_quote(disk)));
  EXPECT_EQ(json_number(out, "capacity_bytes"), 64u << 20);
  EXPECT_EQ(json_number(out, "random_reads"), 200u);
  EXPECT_NE(out.find("\"sequential_mb_per_s\": "), std::string::npos);
}

}  // namespace
