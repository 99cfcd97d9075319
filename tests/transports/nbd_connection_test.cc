// nbd::Connection against real servers: qemu-nbd serving a VMDK and nbdkit with its plugins and
// filters. qemu-img is the oracle for bytes and for the allocation map. The hostile server's
// cases are in nbd_connection_hostile_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "nbd/connection.h"
#include "net/stream.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "transports/nbd_connection_support.h"

namespace {

using namespace nbdconntest;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;
using Seconds = std::chrono::duration<double>;

// --- endpoints -------------------------------------------------------------------------------

TEST(NbdConnectionEndpoint, Parses) {
  auto a = parse_endpoint("nbd.example.com:10810", 10809);
  ASSERT_OK(a);
  EXPECT_EQ(a->host, "nbd.example.com");
  EXPECT_EQ(a->port, 10810);
  auto b = parse_endpoint("10.0.0.1", 10809);
  ASSERT_OK(b);
  EXPECT_EQ(b->port, 10809);
  auto c = parse_endpoint("[::1]:99", 10809);
  ASSERT_OK(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 99);
  EXPECT_EQ(c->display(), "[::1]:99");
  auto d = parse_endpoint("unix:/run/nbd.sock", 10809);
  ASSERT_OK(d);
  EXPECT_EQ(d->unix_path, "/run/nbd.sock");
  EXPECT_EQ(d->display(), "unix:/run/nbd.sock");
  auto e = parse_endpoint("/run/x.sock", 10809);
  ASSERT_OK(e);
  EXPECT_EQ(e->unix_path, "/run/x.sock");
  for (const char* bad :
       {"", "host:", "host:0", "host:65536", "host:12x", "[::1", "unix:rel", ":10809", "[::1]x"}) {
    auto r = parse_endpoint(bad, 10809);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, VIX_E_INVALID_ARG) << bad;
    }
  }
}

TEST(NbdConnectionEndpoint, RefusedConnectionNamesTheEndpoint) {
  const auto port = static_cast<uint16_t>(vixtest::free_port());
  auto r = connect_stream(tcp_endpoint(port), deadline_after_ms(2000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_NETWORK_CONN_REFUSED);
  EXPECT_NE(r.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos);
  TempDir dir;
  auto u = connect_stream(unix_endpoint(dir.file("none.sock")), deadline_after_ms(2000));
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().message.find("none.sock"), std::string::npos);
}

// --- qemu-nbd serving a VMDK -----------------------------------------------------------------

// One disk and one server for the suite: making the oracle's bytes is the slow part.
class NbdConnectionQemu : public ::testing::Test {
 protected:
  static constexpr uint64_t kSize = 64ull << 20;
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    disk_ = dir_->file("disk.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk_) + " 64M");
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0xab 1M 3M' -c 'write -P 0x11 20M 64k' "
        "-c 'write -P 0x5c 40M 8M' -c 'write -z 42M 1M' -c 'write -P 0x77 63M 1M' " +
        sh_quote(disk_));
    expected_ = new std::vector<uint8_t>(vixtest::qemu_raw(disk_));
    server_ = new ServerProcess("qemu-nbd -f vmdk -x disk -k " + sh_quote(dir_->file("nbd.sock")) +
                                    " -t --shared=16 --read-only " + sh_quote(disk_),
                                unix_endpoint(dir_->file("nbd.sock")), dir_->file("qemu-nbd.log"));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete expected_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_EQ(expected_->size(), kSize);
    ASSERT_TRUE(server_->ready()) << server_->log();
  }

  static inline TempDir* dir_ = nullptr;
  static inline std::string disk_;
  static inline std::vector<uint8_t>* expected_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(NbdConnectionQemu, ReadsTheWholeDiskAsQemuImgDoes) {
  auto c = open_export(server_->where(), "disk");
  ASSERT_OK(c);
  const ExportInfo& info = (*c)->info();
  EXPECT_EQ(info.size, kSize);
  EXPECT_TRUE(info.read_only());
  EXPECT_TRUE(info.structured_replies);
  EXPECT_TRUE(info.base_allocation);
  std::vector<uint8_t> got(kSize, 0xee);
  ASSERT_OK((*c)->read(0, kSize, got.data(), 10000));
  EXPECT_TRUE(got == *expected_);
  EXPECT_FALSE((*c)->broken());
}

TEST_F(NbdConnectionQemu, OddChunkingGivesTheSameBytes) {
  auto c = open_export(server_->where(), "disk");
  ASSERT_OK(c);
  (*c)->set_max_request(3 * 4096 + 512);  // requests that straddle clusters and holes
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    uint64_t off = (rng() % (kSize / 512)) * 512;
    uint64_t len = std::min<uint64_t>((1 + rng() % 300) * 512, kSize - off);
    std::vector<uint8_t> got(len, 0xee);
    ASSERT_OK((*c)->read(off, len, got.data(), 10000));
    ASSERT_EQ(0, std::memcmp(got.data(), expected_->data() + off, len)) << off << "+" << len;
  }
}

TEST_F(NbdConnectionQemu, ManyThreadsReadAtOnce) {
  auto c = open_export(server_->where(), "disk");
  ASSERT_OK(c);
  (*c)->set_max_request(64 << 10);
  std::atomic<int> bad{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 100; ++i) {
        uint64_t off = (rng() % (kSize / 4096)) * 4096;
        uint64_t len = std::min<uint64_t>((1 + rng() % 128) * 4096, kSize - off);
        std::vector<uint8_t> got(len);
        auto r = (*c)->read(off, len, got.data(), 10000);
        if (!r.ok())
          ++errors;
        else if (std::memcmp(got.data(), expected_->data() + off, len) != 0)
          ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(bad.load(), 0);
}

// One entry of `qemu-img map --output=json`.
struct MapEntry {
  uint64_t start, length;
  bool zero, data;
};

// The value after "key": inside one JSON object (qemu-img's flat output needs no more).
std::string json_field(const std::string& object, const std::string& key) {
  size_t at = object.find("\"" + key + "\":");
  if (at == std::string::npos) return "";
  at = object.find_first_not_of(' ', at + key.size() + 3);
  size_t end = object.find_first_of(",}", at);
  return at == std::string::npos ? "" : object.substr(at, end - at);
}

std::vector<MapEntry> qemu_map(const std::string& image) {
  std::string json = run_ok("qemu-img map -f vmdk --output=json " + sh_quote(image));
  std::vector<MapEntry> out;
  for (size_t open = json.find('{'); open != std::string::npos; open = json.find('{', open + 1)) {
    size_t close = json.find('}', open);
    if (close == std::string::npos) break;
    std::string obj = json.substr(open, close - open + 1);
    out.push_back({std::stoull(json_field(obj, "start")), std::stoull(json_field(obj, "length")),
                   json_field(obj, "zero") == "true", json_field(obj, "data") == "true"});
  }
  return out;
}

TEST_F(NbdConnectionQemu, BlockStatusMatchesQemuImgMap) {
  auto c = open_export(server_->where(), "disk");
  ASSERT_OK(c);
  std::vector<StatusExtent> extents;
  for (uint64_t pos = 0; pos < kSize;) {
    auto r = (*c)->block_status(pos, kSize - pos, 10000);
    ASSERT_OK(r);
    ASSERT_FALSE(r->empty());
    for (auto& e : *r) {
      ASSERT_EQ(e.offset, pos);
      ASSERT_GT(e.length, 0u);
      extents.push_back(e);
      pos += e.length;
    }
  }
  auto map = qemu_map(disk_);
  ASSERT_FALSE(map.empty());
  // Compare per 64 KiB (the VMDK grain size divides it): both sides may cut ranges differently.
  constexpr uint64_t kStep = 64 << 10;
  size_t mi = 0, ei = 0;
  int data_blocks = 0;
  for (uint64_t pos = 0; pos < kSize; pos += kStep) {
    while (mi < map.size() && map[mi].start + map[mi].length <= pos) ++mi;
    while (ei < extents.size() && extents[ei].offset + extents[ei].length <= pos) ++ei;
    ASSERT_LT(mi, map.size());
    ASSERT_LT(ei, extents.size());
    bool nbd_data = !(extents[ei].flags & 1), nbd_zero = extents[ei].flags & 2;
    EXPECT_EQ(nbd_data, map[mi].data) << "at " << pos;
    EXPECT_EQ(nbd_zero, map[mi].zero) << "at " << pos;
    data_blocks += nbd_data;
  }
  EXPECT_GT(data_blocks, 100);  // the map is not trivially all-hole
}

TEST_F(NbdConnectionQemu, RefusesWhatCannotBeSentWithoutBreaking) {
  auto c = open_export(server_->where(), "disk");
  ASSERT_OK(c);
  std::vector<uint8_t> buf(4096);
  auto past = (*c)->read(kSize - 512, 1024, buf.data(), 1000);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().code, VIX_E_DISK_OUTOFRANGE);
  auto w = (*c)->write(0, 4096, buf.data(), false, 1000);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_FILE_READ_ONLY);
  auto t = (*c)->trim(0, 4096, 1000);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, VIX_E_FILE_READ_ONLY);
  auto z = (*c)->write_zeroes(0, 4096, true, 1000);
  ASSERT_FALSE(z.ok());
  EXPECT_EQ(z.error().code, VIX_E_FILE_READ_ONLY);
  EXPECT_FALSE((*c)->broken());
  ASSERT_OK((*c)->read(1 << 20, 4096, buf.data(), 1000));
  EXPECT_EQ(buf[0], 0xab);
}

TEST_F(NbdConnectionQemu, WritesToAVmdkAreWhatQemuImgReads) {
  std::string disk = dir_->file("rw.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(disk) + " 8M");
  std::string sock = dir_->file("rw.sock");
  ServerProcess server("qemu-nbd -f vmdk -x rw -k " + sh_quote(sock) + " -t " + sh_quote(disk),
                       unix_endpoint(sock), dir_->file("rw.log"));
  ASSERT_TRUE(server.ready()) << server.log();
  std::vector<uint8_t> want(8 << 20, 0);
  {
    auto c = open_export(server.where(), "rw");
    ASSERT_OK(c);
    ASSERT_FALSE((*c)->info().read_only());
    (*c)->set_max_request(192 << 10);
    for (size_t i = 0; i < (3u << 20); ++i) want[(1 << 20) + i] = uint8_t(i * 13 + (i >> 9));
    ASSERT_OK((*c)->write(1 << 20, 3 << 20, want.data() + (1 << 20), false, 10000));
    ASSERT_OK((*c)->write_zeroes(2 << 20, 64 << 10, false, 10000));
    std::fill(want.begin() + (2 << 20), want.begin() + (2 << 20) + (64 << 10), 0);
    ASSERT_OK((*c)->write(7 << 20, 4096, want.data() + (1 << 20), true, 10000));
    std::copy(want.begin() + (1 << 20), want.begin() + (1 << 20) + 4096, want.begin() + (7 << 20));
    ASSERT_OK((*c)->flush(10000));
  }
  server.stop();
  EXPECT_TRUE(vixtest::qemu_raw(disk) == want);
}

// --- nbdkit ----------------------------------------------------------------------------------

class NbdConnectionNbdkit : public ::testing::Test {
 protected:
  // nbdkit on a Unix socket with `args` (plugin, filters and parameters).
  std::unique_ptr<ServerProcess> nbdkit(const std::string& args) {
    std::string sock = dir_.file("nbdkit" + std::to_string(++servers_) + ".sock");
    return std::make_unique<ServerProcess>("nbdkit -f -U " + sh_quote(sock) + " " + args,
                                           unix_endpoint(sock), dir_.file("nbdkit.log"));
  }
  static std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7 + (i >> 12));
    return v;
  }
  TempDir dir_;
  int servers_ = 0;
};

TEST_F(NbdConnectionNbdkit, FileDirServesEachFileByNameOverTcp) {
  std::string files = dir_.file("files");
  run_ok("mkdir " + sh_quote(files));
  auto a = pattern(1 << 20, 1), b = pattern(3 << 20, 9);
  vixtest::write_file(files + "/a.img", a);
  vixtest::write_file(files + "/b.img", b);
  const auto port = static_cast<uint16_t>(vixtest::free_port());
  ServerProcess server(
      "nbdkit -f -i 127.0.0.1 -p " + std::to_string(port) + " file dir=" + sh_quote(files),
      tcp_endpoint(port), dir_.file("nbdkit.log"));
  ASSERT_TRUE(server.ready()) << server.log();
  auto c = open_export(server.where(), "b.img");
  ASSERT_OK(c);
  EXPECT_EQ((*c)->info().size, b.size());
  EXPECT_EQ((*c)->peer(), "127.0.0.1:" + std::to_string(port));
  std::vector<uint8_t> got(b.size());
  ASSERT_OK((*c)->read(0, got.size(), got.data(), 5000));
  EXPECT_TRUE(got == b);

  auto missing = open_export(server.where(), "nope.img");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, VIX_E_FILE_NOT_FOUND) << missing.error().message;
  EXPECT_NE(missing.error().message.find("'nope.img'"), std::string::npos)
      << missing.error().message;
}

TEST_F(NbdConnectionNbdkit, WritesFlushTrimAndZeroesReadBack) {
  auto server = nbdkit("memory 64M");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  const ExportInfo& info = (*c)->info();
  EXPECT_FALSE(info.read_only());
  EXPECT_TRUE(info.can_flush());
  EXPECT_TRUE(info.can_trim());
  EXPECT_TRUE(info.can_write_zeroes());
  EXPECT_TRUE(info.can_multi_conn());
  (*c)->set_max_request(256 << 10);

  auto data = pattern(5 << 20, 3);
  ASSERT_OK((*c)->write(1 << 20, data.size(), data.data(), false, 5000));
  ASSERT_OK((*c)->write(10 << 20, 4096, data.data(), true, 5000));  // FUA
  ASSERT_OK((*c)->flush(5000));
  ASSERT_OK((*c)->trim(2 << 20, 1 << 20, 5000));
  ASSERT_OK((*c)->write_zeroes(4 << 20, 512 << 10, false, 5000));
  ASSERT_OK((*c)->write_zeroes(5 << 20, 512 << 10, true, 5000));

  std::vector<uint8_t> want(12 << 20, 0);
  std::copy(data.begin(), data.end(), want.begin() + (1 << 20));
  std::copy(data.begin(), data.begin() + 4096, want.begin() + (10 << 20));
  std::fill(want.begin() + (2 << 20), want.begin() + (3 << 20), 0);  // memory trims to zero
  std::fill(want.begin() + (4 << 20), want.begin() + (4 << 20) + (512 << 10), 0);
  std::fill(want.begin() + (5 << 20), want.begin() + (5 << 20) + (512 << 10), 0);
  std::vector<uint8_t> got(want.size(), 0xee);
  ASSERT_OK((*c)->read(0, got.size(), got.data(), 5000));
  EXPECT_TRUE(got == want);

  auto extents = (*c)->block_status(0, 64 << 20, 5000);
  ASSERT_OK(extents);
  ASSERT_FALSE(extents->empty());
  EXPECT_EQ(extents->front().offset, 0u);
  EXPECT_NE(extents->front().flags & 1, 0u);  // nothing written below 1 MiB: a hole
}

TEST_F(NbdConnectionNbdkit, WithoutStructuredRepliesReadsWorkAndBlockStatusIsUnavailable) {
  auto server = nbdkit("--no-sr pattern 8M");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  EXPECT_FALSE((*c)->info().structured_replies);
  EXPECT_FALSE((*c)->info().base_allocation);
  std::vector<uint8_t> got(1 << 20);
  ASSERT_OK((*c)->read(3 << 20, got.size(), got.data(), 5000));
  // The pattern plugin stores each 8-byte offset big-endian at that offset.
  for (size_t i = 0; i < got.size(); i += 8) {
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = (v << 8) | got[i + k];
    ASSERT_EQ(v, (3u << 20) + i);
  }
  auto bs = (*c)->block_status(0, 4096, 5000);
  ASSERT_FALSE(bs.ok());
  EXPECT_EQ(bs.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_FALSE((*c)->broken());
}

TEST_F(NbdConnectionNbdkit, HonoursTheServersBlockSizes) {
  // With blocksize-error-policy=error the server fails any request over 64 KiB or unaligned to
  // 4 KiB: a 1 MiB read that succeeds was split.
  auto server = nbdkit(
      "--filter=blocksize-policy memory 8M blocksize-minimum=4096 blocksize-preferred=16384 "
      "blocksize-maximum=65536 blocksize-error-policy=error");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  EXPECT_EQ((*c)->info().min_block, 4096u);
  EXPECT_EQ((*c)->info().preferred_block, 16384u);
  EXPECT_EQ((*c)->info().max_block, 65536u);
  (*c)->set_max_request(2 << 20);
  auto data = pattern(1 << 20, 5);
  ASSERT_OK((*c)->write(4096, data.size(), data.data(), false, 5000));
  std::vector<uint8_t> got(data.size());
  ASSERT_OK((*c)->read(4096, got.size(), got.data(), 5000));
  EXPECT_TRUE(got == data);
  auto unaligned = (*c)->read(512, 4096, got.data(), 5000);
  ASSERT_FALSE(unaligned.ok());
  EXPECT_EQ(unaligned.error().code, VIX_E_INVALID_ARG);
  EXPECT_FALSE((*c)->broken());
}

// A maximum of 0xffffffff means "no limit" whatever the minimum (nbdkit sends it when only a
// minimum is set): accepted, and requests stay within the protocol's 32 MiB.
TEST_F(NbdConnectionNbdkit, UnlimitedMaximumBlockSizeIsAccepted) {
  auto server = nbdkit("--filter=blocksize-policy memory 8M blocksize-minimum=4096");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  EXPECT_EQ((*c)->info().min_block, 4096u);
  EXPECT_EQ((*c)->info().max_block, 32u << 20);
  std::vector<uint8_t> got(1 << 20);
  ASSERT_OK((*c)->read(0, got.size(), got.data(), 5000));
}

TEST_F(NbdConnectionNbdkit, ServerErrorsBecomeVixErrorsAndKeepTheConnection) {
  auto server = nbdkit(
      "--filter=error memory 8M error-pread=EIO error-pread-rate=100% error-pwrite=ENOSPC "
      "error-pwrite-rate=100%");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  std::vector<uint8_t> buf(8192);
  auto r = (*c)->read(0, buf.size(), buf.data(), 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_FILE_ERROR);
  EXPECT_NE(r.error().message.find("EIO"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("NBD_CMD_READ"), std::string::npos) << r.error().message;
  auto w = (*c)->write(0, buf.size(), buf.data(), false, 5000);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_DISK_FULL);
  EXPECT_NE(w.error().message.find("ENOSPC"), std::string::npos) << w.error().message;
  EXPECT_FALSE((*c)->broken());
  ASSERT_OK((*c)->flush(5000));
}

TEST_F(NbdConnectionNbdkit, SlowReplyTimesOutAndBreaksTheConnection) {
  auto server = nbdkit("--filter=delay memory 8M rdelay=2");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  std::vector<uint8_t> buf(65536);
  auto start = Clock::now();
  auto r = (*c)->read(0, buf.size(), buf.data(), 500);
  double took = Seconds(Clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_SOCKET_ERROR);
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().message;
  EXPECT_GE(took, 0.45);
  EXPECT_LT(took, 1.8);
  EXPECT_TRUE((*c)->broken());
  auto again = (*c)->read(0, buf.size(), buf.data(), 500);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, VIX_E_HOST_TCP_CONN_LOST);
  // Writes are not delayed: the same server answers a fresh connection.
  auto fresh = open_export(server->where(), "");
  ASSERT_OK(fresh);
  ASSERT_OK((*fresh)->write(0, 4096, buf.data(), false, 5000));
}

TEST_F(NbdConnectionNbdkit, ZeroesWithoutServerSupportAreWritten) {
  auto server = nbdkit("--filter=nozero memory 8M zeromode=none");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_OK(c);
  EXPECT_FALSE((*c)->info().can_write_zeroes());
  auto data = pattern(3 << 20, 11);
  ASSERT_OK((*c)->write(0, data.size(), data.data(), false, 5000));
  ASSERT_OK((*c)->write_zeroes(512 << 10, 2 << 20, true, 5000));
  std::fill(data.begin() + (512 << 10), data.begin() + (512 << 10) + (2 << 20), 0);
  std::vector<uint8_t> got(data.size(), 0xee);
  ASSERT_OK((*c)->read(0, got.size(), got.data(), 5000));
  EXPECT_TRUE(got == data);
}

TEST_F(NbdConnectionNbdkit, ServerRequiringTlsIsAClearError) {
  std::string psk = dir_.file("keys.psk");
  vixtest::write_file(psk, "alice:0123456789abcdef0123456789abcdef\n");
  auto server = nbdkit("--tls=require --tls-psk=" + sh_quote(psk) + " memory 8M");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(c.error().message.find("requires TLS"), std::string::npos) << c.error().message;
}

}  // namespace
