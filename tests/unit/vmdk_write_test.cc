// Writes through vmdk::open, checked with qemu-img (bytes via qemu_raw, `qemu-img check`).
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "common/byte_source.h"
#include "unit/vmdk_test_util.h"
#include "vmdk/descriptor.h"
#include "vmdk/vmdk.h"

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;
using namespace vmdktest;

namespace {

constexpr uint64_t kMiB = 1 << 20;

struct SectorWrite {
  uint64_t sector, count;
  uint8_t byte;
};

std::vector<SectorWrite> random_sector_writes(uint64_t cap, int n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<SectorWrite> out;
  for (int i = 0; i < n; ++i) {
    uint64_t count = 1 + rng() % 400;
    uint64_t sector = rng() % (cap - count + 1);
    out.push_back({sector, count, uint8_t(1 + rng() % 254)});
  }
  return out;
}

void engine_write(vix::BlockDevice& d, const std::vector<SectorWrite>& ws,
                  std::vector<uint8_t>& model) {
  for (auto& w : ws) {
    std::vector<uint8_t> buf(w.count * 512, w.byte);
    auto r = d.write(w.sector, w.count, buf.data());
    ASSERT_TRUE(r.ok()) << r.error().message;
    std::fill_n(model.begin() + w.sector * 512, w.count * 512, w.byte);
  }
  ASSERT_TRUE(d.flush().ok());
}

void expect_check_clean(const std::string& img) {
  auto r = run("qemu-img check -f vmdk " + sh_quote(img));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("No errors"), std::string::npos) << r.output;
}

std::string cid_line(const std::string& text) {
  auto p = text.find("\nCID=");
  return p == std::string::npos ? "" : text.substr(p + 1, text.find('\n', p + 1) - p - 1);
}

// Writes random sector ranges through the engine on top of qemu-io patterns; qemu must read the
// same bytes back and find no errors.
void check_write_subformat(const std::string& subformat, uint64_t size, uint32_t seed) {
  TempDir dir;
  std::string img = dir.file("w.vmdk");
  run_ok("qemu-img create -q -f vmdk -o subformat=" + subformat + " " + sh_quote(img) + " " +
         std::to_string(size));
  qemu_write(img, random_patterns(0, size, 20, seed));
  auto model = vixtest::qemu_raw(img);
  std::string desc_file = subformat == "monolithicSparse" ? "" : img;
  auto desc_bytes = vixtest::read_file(img);
  std::string before =
      desc_file.empty() ? "" : cid_line(std::string(desc_bytes.begin(), desc_bytes.end()));
  {
    auto disk = open_disk(img, false);
    ASSERT_TRUE(disk);
    engine_write(*disk, random_sector_writes(size / 512, 60, seed + 100), model);
  }
  expect_same(vixtest::qemu_raw(img), model, subformat + " after engine writes");
  if (subformat.find("Sparse") != std::string::npos) expect_check_clean(img);
  if (!desc_file.empty()) {
    auto bytes = vixtest::read_file(img);
    EXPECT_NE(cid_line(std::string(bytes.begin(), bytes.end())), before) << "CID not rewritten";
  }
  // And through the engine again.
  auto disk = open_disk(img);
  ASSERT_TRUE(disk);
  expect_same(engine_read_all(*disk), model, subformat + " engine read-back");
}

}  // namespace

TEST(VmdkWrite, MonolithicSparse) {
  check_write_subformat("monolithicSparse", 20 * kMiB, 1);
}
TEST(VmdkWrite, MonolithicFlat) {
  check_write_subformat("monolithicFlat", 10 * kMiB, 2);
}
TEST(VmdkWrite, TwoGbMaxExtentSparse) {
  check_write_subformat("twoGbMaxExtentSparse", 12 * kMiB, 3);
}
TEST(VmdkWrite, TwoGbMaxExtentFlat) {
  check_write_subformat("twoGbMaxExtentFlat", 12 * kMiB, 4);
}

TEST(VmdkWrite, EmbeddedCidChangesOnFirstWrite) {
  TempDir dir;
  std::string img = dir.file("c.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(img) + " 1M");
  auto cid = [&] {
    auto out = run_ok("head -c 4096 " + sh_quote(img) + " | tail -c +513 | tr -d '\\0'");
    return cid_line("\n" + out);
  };
  std::string before = cid();
  ASSERT_FALSE(before.empty());
  auto disk = open_disk(img, false);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(512, 0x44);
  ASSERT_TRUE(disk->write(3, 1, buf.data()).ok());
  std::string after = cid();
  EXPECT_NE(after, before);
  ASSERT_TRUE(disk->write(900, 1, buf.data()).ok());
  EXPECT_EQ(cid(), after) << "CID rewritten once per open";
  disk.reset();
  run_ok("qemu-io -f vmdk -c 'read -P 0x44 1536 512' -c 'read -P 0 0 1536' " + sh_quote(img));
  expect_check_clean(img);
}

// A child written through the engine copies head and tail of new grains from its parent.
TEST(VmdkWrite, ChildCopyOnWrite) {
  TempDir dir;
  std::string base = dir.file("base.vmdk"), child = dir.file("child.vmdk");
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(base) + " 8M");
  qemu_write(base, random_patterns(0, 8 * kMiB, 30, 31));
  run_ok("qemu-img create -q -f vmdk -b base.vmdk -F vmdk " + sh_quote(child));
  auto base_before = vixtest::read_file(dir.file("base-flat.vmdk"));
  auto base_desc = vixtest::read_file(base);
  auto model = vixtest::qemu_raw(child);
  {
    auto disk = open_disk(child, false);
    ASSERT_TRUE(disk);
    EXPECT_EQ(disk->info().num_links, 2);
    engine_write(*disk, random_sector_writes(8 * 2048, 40, 32), model);
    expect_same(engine_read_all(*disk), model, "engine view");
  }
  expect_same(vixtest::qemu_raw(child), model, "qemu view of the child");
  expect_check_clean(child);
  EXPECT_EQ(vixtest::read_file(dir.file("base-flat.vmdk")), base_before) << "parent modified";
  EXPECT_EQ(vixtest::read_file(base), base_desc) << "parent descriptor modified";
}

TEST(VmdkWrite, StaleChildCowWritesNothing) {
  TempDir dir;
  std::string base = dir.file("base.vmdk"), child = dir.file("child.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 4M");
  run_ok("qemu-img create -q -f vmdk -b base.vmdk -F vmdk " + sh_quote(child));
  run_ok("qemu-io -f vmdk -c 'write -P 0x11 0 64k' " + sh_quote(child));
  run_ok("qemu-io -f vmdk -c 'write -P 0x22 0 4M' " + sh_quote(base));  // child is now stale
  auto before = vixtest::read_file(child);
  auto disk = open_disk(child, false);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(3 * 512, 0x33);
  // Partial grain over a hole needs parent data: refused before anything is written.
  auto r = disk->write(200, 3, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_CID_MISMATCH));
  // A request that starts in an allocated grain and ends in a hole fails as a whole.
  std::vector<uint8_t> big(200 * 512, 0x44);
  auto r2 = disk->write(100, 200, big.data());
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(vixtest::read_file(child), before);
  // Whole grains need no parent data, and the allocated grain is writable.
  ASSERT_TRUE(disk->write(1, 3, buf.data()).ok());
}

TEST(VmdkWrite, StreamOptimizedAndReadOnlyRefuse) {
  TempDir dir;
  std::string raw = dir.file("r.raw"), img = dir.file("s.vmdk");
  run_ok("truncate -s 1M " + sh_quote(raw));
  run_ok("qemu-io -f raw -c 'write -P 0x5a 0 100k' " + sh_quote(raw));
  run_ok("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + sh_quote(raw) + " " +
         sh_quote(img));
  auto before = vixtest::read_file(img);
  std::vector<uint8_t> buf(512, 1);
  {
    auto disk = open_disk(img, false);
    ASSERT_TRUE(disk);
    auto r = disk->write(0, 1, buf.data());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_NOT_SUPPORTED));
    EXPECT_NE(r.error().message.find("streamOptimized"), std::string::npos);
    EXPECT_FALSE(disk->write(1000, 1, buf.data()).ok());
  }
  EXPECT_EQ(vixtest::read_file(img), before);
  auto ro = open_disk(img);
  auto r = ro->write(0, 1, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_FILE_READ_ONLY));
  auto oor = open_disk(img, false)->read(2048, 1, buf.data());
  EXPECT_EQ(oor.error().code, static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));
}

// GD entries of 0 (a VMware file that did not pre-allocate every grain table): the engine
// appends a grain table instead of corrupting the file as qemu does.
TEST(VmdkWrite, GrainDirectoryHoleGetsATable) {
  TempDir dir;
  std::string img = dir.file("g.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(img) + " 100M");
  auto f = vixtest::read_file(img);
  // 100M layout: RGD @21, GD @38, 4 tables each (§4.2). Clear entry 2 of both.
  for (size_t off : {21 * 512 + 8, 38 * 512 + 8}) std::fill_n(f.begin() + off, 4, 0);
  vixtest::write_file(img, f);
  std::vector<uint8_t> model(100 * kMiB, 0);
  {
    auto disk = open_disk(img, false);
    ASSERT_TRUE(disk);
    // 64 MiB lies in GT 2 (32 MiB per table).
    std::vector<SectorWrite> ws{
        {64 * 2048 + 5, 300, 0x61}, {64 * 2048 + 40000, 8, 0x62}, {1, 1, 0x63}};
    engine_write(*disk, ws, model);
  }
  // qemu-img compare against the model (reading 100 MiB back into a test vector is slow).
  vixtest::write_file(dir.file("model.raw"), model);
  run_ok("qemu-img compare -q -f vmdk -F raw " + sh_quote(img) + " " +
         sh_quote(dir.file("model.raw")));
  expect_check_clean(img);
}

TEST(VmdkWrite, ZeroedGrainWriteFillsZeros) {
  TempDir dir;
  std::string base = dir.file("base.vmdk"), child = dir.file("child.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 2M");
  run_ok("qemu-io -f vmdk -c 'write -P 0xaa 0 2M' " + sh_quote(base));
  run_ok("qemu-img create -q -f vmdk -o zeroed_grain=on -b base.vmdk -F vmdk " + sh_quote(child));
  run_ok("qemu-io -f vmdk -c 'write -z 0 64k' " + sh_quote(child));
  auto model = vixtest::qemu_raw(child);
  {
    auto disk = open_disk(child, false);
    ASSERT_TRUE(disk);
    engine_write(*disk, {{10, 2, 0x5b}, {200, 2, 0x5c}}, model);
  }
  EXPECT_EQ(model[0], 0);
  EXPECT_EQ(model[200 * 512 - 1], 0xaa);
  expect_same(vixtest::qemu_raw(child), model, "zeroed grain head/tail are zeros");
  expect_check_clean(child);
}

TEST(VmdkWrite, Metadata) {
  TempDir dir;
  for (std::string sub : {"monolithicSparse", "monolithicFlat"}) {
    std::string img = dir.file(sub + ".vmdk");
    run_ok("qemu-img create -q -f vmdk -o subformat=" + sub + " " + sh_quote(img) + " 1M");
    {
      auto disk = open_disk(img, false);
      ASSERT_TRUE(disk);
      auto r = disk->write_metadata("ddb.uuid", "60 00 C2 91 aa bb");
      ASSERT_TRUE(r.ok()) << r.error().message;
      ASSERT_TRUE(disk->write_metadata("ddb.comment", "hello").ok());
      auto md = disk->metadata();
      ASSERT_TRUE(md.ok());
      EXPECT_EQ(md->at("ddb.uuid"), "60 00 C2 91 aa bb");
      EXPECT_EQ(disk->info().uuid, "60 00 C2 91 aa bb");
      // Too big for the 10 KiB embedded area: a clear error, nothing written.
      auto huge = disk->write_metadata("ddb.huge", std::string(20000, 'x'));
      if (sub == "monolithicSparse") {
        EXPECT_FALSE(huge.ok());
      }
    }
    auto disk = open_disk(img);
    ASSERT_TRUE(disk);
    auto md = disk->metadata();
    ASSERT_TRUE(md.ok());
    EXPECT_EQ(md->at("ddb.comment"), "hello");
    EXPECT_EQ(md->at("ddb.adapterType"), "ide");
    run_ok("qemu-img info " + sh_quote(img));
    auto ro = disk->write_metadata("ddb.x", "y");
    EXPECT_EQ(ro.error().code, static_cast<VixError>(VIX_E_FILE_READ_ONLY));
  }
}

// Writers (exclusive) and readers (shared) at once on a child: every read sees either the old
// or the new bytes of a region, and the end result is what the writes say.
TEST(VmdkWrite, ConcurrentReadersAndWriters) {
  TempDir dir;
  std::string base = dir.file("base.vmdk"), child = dir.file("child.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 8M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x10 0 8M' " + sh_quote(base));
  run_ok("qemu-img create -q -f vmdk -b base.vmdk -F vmdk " + sh_quote(child));
  auto disk = open_disk(child, false);
  ASSERT_TRUE(disk);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  // Writer t owns sectors [t*8192, t*8192+8192) and writes 0x20+t in odd-sized pieces.
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> buf(300 * 512, uint8_t(0x20 + t));
      for (uint64_t s = t * 8192; s < (t + 1) * 8192u; s += 300) {
        uint64_t n = std::min<uint64_t>(300, (t + 1) * 8192 - s);
        if (!disk->write(s, n, buf.data()).ok()) ++bad;
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(7 + t);
      std::vector<uint8_t> buf;
      for (int i = 0; i < 400; ++i) {
        uint64_t n = 1 + rng() % 200, s = rng() % (16384 - n);
        buf.resize(n * 512);
        if (!disk->read(s, n, buf.data()).ok()) ++bad;
        for (uint64_t k = 0; k < buf.size(); ++k) {
          uint8_t owner = uint8_t(0x20 + (s + k / 512) / 8192);
          if (buf[k] != 0x10 && buf[k] != owner) {
            ++bad;
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  ASSERT_TRUE(disk->flush().ok());
  disk.reset();
  run_ok("qemu-io -f vmdk -c 'read -P 0x20 0 4M' -c 'read -P 0x21 4M 4M' " + sh_quote(child));
  expect_check_clean(child);
}
