// The nbd transport through the library (vix::Connection / vix::Disk) against real servers on
// 127.0.0.1: qemu-nbd serving VMDKs made by qemu-img, nbdkit's file plugin, and faults (EIO from
// nbdkit's error filter, a server killed and restarted mid-read, a server gone for good).
// qemu-img is the oracle for bytes (convert) and for the allocation map (map).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/disk_read.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "transports/nbd.h"
#include "transports/nbd_transport_servers.h"
#include "vix/connection.h"
#include "vix/library.h"

using vixtest::free_port;
using vixtest::PortServer;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;

namespace {

using vixtest::read_all;

using nbdtest::captured;

// Allocated sectors by qemu-img map (data: true), rounded out to `chunk` sectors and merged:
// what QueryAllocatedBlocks must answer.
std::vector<vix::SectorExtent> qemu_map(const std::string& image, const std::string& format,
                                        uint64_t chunk) {
  const std::string json =
      run_ok("qemu-img map --output=json -f " + format + " " + sh_quote(image));
  std::vector<vix::SectorExtent> out;
  size_t pos = 0;
  while ((pos = json.find("\"start\":", pos)) != std::string::npos) {
    const size_t end = json.find('}', pos);
    const std::string item = json.substr(pos, end - pos);
    pos = end;
    auto num = [&](const std::string& key) {
      size_t p = item.find("\"" + key + "\":");
      return std::stoull(item.substr(p + key.size() + 3));
    };
    if (item.find("\"data\": true") == std::string::npos) continue;
    uint64_t first = num("start") / 512 / chunk * chunk;
    uint64_t last = (num("start") + num("length") + chunk * 512 - 1) / (chunk * 512) * chunk;
    if (!out.empty() && out.back().start + out.back().count >= first) {
      out.back().count = std::max(out.back().start + out.back().count, last) - out.back().start;
    } else {
      out.push_back({first, last - first});
    }
  }
  return out;
}

std::vector<vix::SectorExtent> merged(std::vector<vix::SectorExtent> in) {
  std::vector<vix::SectorExtent> out;
  for (const auto& e : in) {
    if (!out.empty() && out.back().start + out.back().count == e.start) {
      out.back().count += e.count;
    } else {
      out.push_back(e);
    }
  }
  return out;
}

class NbdTransportLocal : public ::testing::Test {
 protected:
  void TearDown() override { vix::Library::exit(); }

  void init(const std::string& config) {
    auto r = nbdtest::init_library_capturing_log(dir_.file("vixfs.conf"), config);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  // A 24 MiB monolithicSparse disk with data in a few places.
  std::string make_vmdk(const std::string& name, const std::string& size = "24M") {
    const std::string path = dir_.file(name);
    run_ok("qemu-img create -q -f vmdk " + sh_quote(path) + " " + size);
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0x5a 0 3M' -c 'write -P 0x11 9M 1M' "
        "-c 'write -P 0x77 23M 4096' -c 'write -P 0x3c 5M 1536' " +
        sh_quote(path));
    return path;
  }

  std::unique_ptr<PortServer> qemu_nbd(const std::string& image, const std::string& export_name,
                                       const std::string& extra = "") {
    const int port = free_port();
    return std::make_unique<PortServer>(
        "qemu-nbd -f vmdk -x " + sh_quote(export_name) + " -b 127.0.0.1 -p " +
            std::to_string(port) + " -t --read-only --shared=8 " + extra + " " + sh_quote(image),
        port, dir_.file("server.log"));
  }

  // filters: "--filter=NAME ..."; params: their settings, which go after the plugin's.
  std::unique_ptr<PortServer> nbdkit(const std::string& dir, const std::string& filters = "",
                                     const std::string& params = "") {
    const int port = free_port();
    return std::make_unique<PortServer>("nbdkit -f -i 127.0.0.1 -p " + std::to_string(port) + " " +
                                            filters + " file dir=" + sh_quote(dir) + " " + params,
                                        port, dir_.file("server.log"));
  }

  static vix::Result<std::unique_ptr<vix::Connection>> local(const std::string& modes = "nbd") {
    return vix::Connection::connect(vix::ConnectSpec{}, true, "", modes);
  }

  TempDir dir_;
};

TEST_F(NbdTransportLocal, QemuNbdVmdkEqualsQemuImg) {
  const std::string img = make_vmdk("disk1.vmdk");
  auto srv = qemu_nbd(img, "disk1.vmdk");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("disk1.vmdk", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "nbd");
  EXPECT_EQ((*disk)->info().capacity_sectors, 24u * 2048);
  EXPECT_EQ((*disk)->info().create_type, "nbd");
  EXPECT_TRUE((*disk)->read_only());
  auto want = vixtest::qemu_raw(img);
  EXPECT_TRUE(read_all(**disk) == want) << "odd-sized reads differ from qemu-img";
  // One big read: split over the pool's connections.
  std::vector<uint8_t> all(want.size());
  auto r = (*disk)->read(0, all.size() / 512, all.data());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(all == want) << "one whole-disk read differs from qemu-img";

  auto map = (*disk)->query_allocated(0, 24 * 2048, 128);
  ASSERT_TRUE(map.ok()) << map.error().message;
  EXPECT_EQ(merged(*map), qemu_map(img, "vmdk", 128));
  EXPECT_FALSE(map->empty());

  uint8_t sector[512] = {};
  auto w = (*disk)->write(0, 1, sector);
  EXPECT_FALSE(w.ok());
  EXPECT_NE(captured().find("connection(s)"), std::string::npos) << captured();
}

TEST_F(NbdTransportLocal, NbdkitFileDirEqualsFileAndMap) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  const std::string raw = dir + "/disk.raw";
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 32M");
  run_ok(
      "qemu-io -f raw -c 'write -P 0x42 1M 2M' -c 'write -P 0x99 20M 64k' -c 'write -P 0x1 "
      "31M 1M' " +
      sh_quote(raw));
  auto srv = nbdkit(dir);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.maxRequestKB = 256\nvixfs.nbd.connections = 3\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("disk.raw", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "nbd");
  auto want = vixtest::read_file(raw);
  EXPECT_TRUE(read_all(**disk, 7777) == want);
  std::vector<uint8_t> all(want.size());
  ASSERT_TRUE((*disk)->read(0, all.size() / 512, all.data()).ok());
  EXPECT_TRUE(all == want);
  auto map = (*disk)->query_allocated(0, 32 * 2048, 128);
  ASSERT_TRUE(map.ok()) << map.error().message;
  EXPECT_EQ(merged(*map), qemu_map(raw, "raw", 128));
  EXPECT_NE(captured().find("3 connection(s)"), std::string::npos) << captured();
}

TEST_F(NbdTransportLocal, ExportTemplateAndWritableExport) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  const std::string raw = dir + "/w.raw";
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 4M");
  auto srv = nbdkit(dir);
  ASSERT_TRUE(srv->ready()) << srv->log();
  // The template makes "w.raw" out of the path "some/folder/w.raw".
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.export = \"{file}\"\n");
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, false, "", "nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("some/folder/w.raw", 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_FALSE((*disk)->read_only());
  std::vector<uint8_t> data(3 * 512 * 1024);  // spread over the pool
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + i / 4096);
  auto w = (*disk)->write(17, data.size() / 512, data.data());
  ASSERT_TRUE(w.ok()) << w.error().message;
  ASSERT_TRUE((*disk)->flush().ok());
  disk->reset();
  auto file = vixtest::read_file(raw);
  ASSERT_EQ(file.size(), 4u << 20);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + 17 * 512));
  EXPECT_EQ(file[17 * 512 - 1], 0);
}

TEST_F(NbdTransportLocal, UnknownTemplateNameIsAnError) {
  vix::ExportNameParts p;
  p.datastore = "ds";
  p.path = "vm/d.vmdk";
  p.file = "d.vmdk";
  auto ok = vix::expand_export_template("{datastore}:{path}:{file}:{vm}{snapshot}", p);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "ds:vm/d.vmdk:d.vmdk:");
  EXPECT_FALSE(vix::expand_export_template("{disk}", p).ok());
  EXPECT_FALSE(vix::expand_export_template("{file", p).ok());
}

TEST_F(NbdTransportLocal, NoServerIsNotReachable) {
  init("");
  auto conn = local("nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("disk1.vmdk", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_NE(disk.error().message.find("not reachable: no NBD server (set vixfs.nbd.server)"),
            std::string::npos)
      << disk.error().message;
}

TEST_F(NbdTransportLocal, ExportSizeNotAMultipleOf512IsRefused) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  vixtest::write_file(dir + "/odd.bin", std::vector<uint8_t>(1000, 1));
  auto srv = nbdkit(dir);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("odd.bin", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_NE(disk.error().message.find("1000 is not a multiple of 512"), std::string::npos)
      << disk.error().message;
}

TEST_F(NbdTransportLocal, ServerEioIsACleanErrorAndGoodReadsMatch) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  const std::string raw = dir + "/e.raw";
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 8M");
  run_ok("qemu-io -f raw -c 'write -P 0x6b 0 8M' " + sh_quote(raw));
  auto srv = nbdkit(dir, "--filter=error", "error-rate=30% error=EIO");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("e.raw", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  const auto want = vixtest::read_file(raw);
  int failures = 0, successes = 0;
  std::vector<uint8_t> buf(64 * 1024);
  for (int i = 0; i < 100; ++i) {
    const uint64_t sector = (static_cast<uint64_t>(i) * 311) % (16384 - 128);
    std::fill(buf.begin(), buf.end(), 0);
    auto r = (*disk)->read(sector, 128, buf.data());
    if (r.ok()) {
      ++successes;
      EXPECT_TRUE(std::equal(buf.begin(), buf.end(), want.begin() + sector * 512));
    } else {
      ++failures;
      EXPECT_NE(r.error().message.find("e.raw"), std::string::npos) << r.error().message;
    }
  }
  EXPECT_GT(failures, 0);
  EXPECT_GT(successes, 0);
}

TEST_F(NbdTransportLocal, ServerRestartedDuringReadsReadsStillMatch) {
  const std::string img = make_vmdk("disk1.vmdk", "32M");
  run_ok("qemu-io -f vmdk -c 'write -P 0xa1 24M 8M' " + sh_quote(img));
  auto srv = qemu_nbd(img, "d");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.export = d\nvixDiskLib.nfc.RequestTimeoutMs = 20000\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("x", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  const auto want = vixtest::qemu_raw(img);
  std::atomic<bool> done{false};
  std::atomic<int> rounds{0};
  std::thread reader([&] {
    for (int i = 0; i < 5; ++i) {
      auto got = read_all(**disk, 2048 + 13);
      EXPECT_TRUE(got == want) << "round " << i;
      ++rounds;
    }
    done = true;
  });
  // Two outages, a completed round apart, so each is a separate recovery.
  int outages = 0;
  for (int k = 0; k < 2 && !done; ++k) {
    while (rounds.load() < 2 * k && !done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    if (done) break;
    srv->stop();
    ++outages;
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    if (!srv->start()) {
      ADD_FAILURE() << srv->log();
      break;
    }
  }
  reader.join();
  EXPECT_EQ(rounds.load(), 5);
  EXPECT_EQ(outages, 2);
  const std::string log = captured();
  size_t recoveries = 0;
  for (size_t p = 0; (p = log.find("completed after reconnecting", p)) != std::string::npos; ++p) {
    ++recoveries;
  }
  EXPECT_GE(recoveries, 2u) << log;
  // stats.json's "reconnects": every connection of the pool came back after each outage.
  EXPECT_GE((*disk)->transport_stats().link_counter("reconnects"), 2u);
}

TEST_F(NbdTransportLocal, ServerGoneForGoodFailsWithinTheBudget) {
  const std::string img = make_vmdk("disk1.vmdk");
  auto srv = qemu_nbd(img, "d");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.export = d\nvixDiskLib.nfc.RequestTimeoutMs = 2000\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("x", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(1 << 20);
  ASSERT_TRUE((*disk)->read(0, 2048, buf.data()).ok());
  srv->stop();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = (*disk)->read(2048, 2048, buf.data());
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST) << r.error().message;
  EXPECT_NE(r.error().message.find("offset 1048576"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("export \"d\""), std::string::npos) << r.error().message;
  EXPECT_GE(ms, 1500);
  EXPECT_LT(ms, 8000);
}

TEST_F(NbdTransportLocal, UnixSocketServer) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  const std::string raw = dir + "/u.raw";
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 2M");
  run_ok("qemu-io -f raw -c 'write -P 0x2d 4096 1M' " + sh_quote(raw));
  const std::string sock = dir_.file("nbd.sock");
  vixtest::Child server(
      {{"nbdkit", "-f", "-U", sock, "file", "dir=" + dir}, "", {}, dir_.file("server.log")});
  ASSERT_TRUE(server.wait_until([&] { return vixtest::unix_socket_open(sock); })) << server.log();
  init("vixfs.nbd.server = " + sock + "\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("u.raw", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_TRUE(read_all(**disk) == vixtest::read_file(raw));
}

TEST_F(NbdTransportLocal, SlowServerPastTheReadTimeoutFailsWithinTheBudget) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  run_ok("qemu-img create -q -f raw " + sh_quote(dir + "/s.raw") + " 1M");
  auto srv = nbdkit(dir, "--filter=delay", "rdelay=5");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixDiskLib.nfc.ReadTimeoutMs = 500\nvixDiskLib.nfc.RequestTimeoutMs = 1500\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("s.raw", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(4096);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = (*disk)->read(8, 8, buf.data());
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST) << r.error().message;
  EXPECT_LT(ms, 4000) << r.error().message;
}

TEST_F(NbdTransportLocal, MinimumBlockSizeIsHonouredForOddReads) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  const std::string raw = dir + "/b.raw";
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 4M");
  run_ok(
      "qemu-io -f raw -c 'write -P 0x10 0 1M' -c 'write -P 0x20 1M 1M' -c 'write -P 0x30 "
      "3M 1M' " +
      sh_quote(raw));
  // Unaligned requests would be refused by the client (and the server): they must be aligned.
  auto srv =
      nbdkit(dir, "--filter=blocksize-policy",
             "blocksize-minimum=4096 blocksize-maximum=33554432 blocksize-error-policy=error");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = local();
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("b.raw", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  const auto want = vixtest::read_file(raw);
  EXPECT_TRUE(read_all(**disk, 13) == want);  // 13 sectors: crosses 4 KiB blocks at both ends
  for (uint64_t sector : {1ull, 7ull, 8ull, 2047ull, 8191ull}) {
    std::vector<uint8_t> one(512);
    auto r = (*disk)->read(sector, 1, one.data());
    ASSERT_TRUE(r.ok()) << sector << ": " << r.error().message;
    EXPECT_TRUE(std::equal(one.begin(), one.end(), want.begin() + sector * 512)) << sector;
  }
  std::vector<uint8_t> big(3 * 1024 * 1024 + 1024);
  ASSERT_TRUE((*disk)->read(3, big.size() / 512, big.data()).ok());
  EXPECT_TRUE(std::equal(big.begin(), big.end(), want.begin() + 3 * 512));
}

// A server that breaks the protocol on every connection (nbd_hostile_server.py): each request
// fails after a few reconnects, not after the whole RequestTimeoutMs, and nothing is returned.
TEST_F(NbdTransportLocal, HostileServerFailsFastWithoutWaitingForTheBudget) {
  for (const std::string mode : {"bad_magic", "chunk_outside"}) {
    SCOPED_TRACE(mode);
    const std::string sock = dir_.file(mode + ".sock");
    const std::string script =
        std::string(VIXFS_SOURCE_DIR) + "/tests/transports/nbd_hostile_server.py";
    vixtest::Child server({{"python3", script, sock, mode}, "", {}, dir_.file(mode + ".log")});
    ASSERT_TRUE(server.wait_until([&] { return vixtest::unix_socket_open(sock); })) << server.log();
    init("vixfs.nbd.server = " + sock + "\n");
    auto conn = local();
    ASSERT_TRUE(conn.ok());
    auto disk = (*conn)->open("x", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    std::vector<uint8_t> buf(64 * 1024, 0xee);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = (*disk)->read(0, 128, buf.data());
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST) << r.error().message;
    EXPECT_NE(r.error().message.find("broke again"), std::string::npos) << r.error().message;
    EXPECT_LT(ms, 5000) << r.error().message;
    disk->reset();
    conn->reset();
    vix::Library::exit();
  }
}

TEST_F(NbdTransportLocal, ReadOnlyExportMakesAReadOnlyDisk) {
  const std::string dir = dir_.file("exports");
  std::filesystem::create_directories(dir);
  run_ok("qemu-img create -q -f raw " + sh_quote(dir + "/r.raw") + " 1M");
  auto srv = nbdkit(dir, "-r");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, false, "", "nbd");
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open("r.raw", 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_TRUE((*disk)->device().read_only());
  std::vector<uint8_t> sector(512, 1);
  auto w = (*disk)->device().write(0, 1, sector.data());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_FILE_READ_ONLY) << w.error().message;
  EXPECT_NE(w.error().message.find("read-only export"), std::string::npos) << w.error().message;
}

}  // namespace
