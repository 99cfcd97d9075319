// Discard (BlockDevice::unmap -> NBD_CMD_WRITE_ZEROES that may punch a hole) and write-through
// (VIXDISKLIB_FLAG_OPEN_UNBUFFERED -> NBD FUA) of the nbd transport, against qemu-nbd and nbdkit
// on 127.0.0.1. What went over the wire is read from the servers' own logs (qemu-nbd's
// nbd_receive_request trace, nbdkit's log filter); the bytes and the holes from the served file.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <cstdio>

#include <filesystem>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "transports/nbd_transport_servers.h"
#include "vix/connection.h"
#include "vix/library.h"

using vixtest::free_port;
using vixtest::PortServer;
using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::TempDir;

namespace {

// One NBD request as qemu-nbd's trace shows it.
struct TracedRequest {
  unsigned flags = 0, type = 0;
  uint64_t from = 0, len = 0;
};

// No std::regex: GCC 12 with ASan warns inside <regex>, and -Werror stops the build.
std::vector<TracedRequest> traced_requests(const std::string& log) {
  std::vector<TracedRequest> out;
  const std::string key = ".flags = 0x";
  for (size_t at = log.find(key); at != std::string::npos; at = log.find(key, at + 1)) {
    TracedRequest r;
    unsigned long long from = 0, len = 0;
    if (std::sscanf(log.c_str() + at, ".flags = 0x%x, .type = 0x%x, from = %llu, len = %llu",
                    &r.flags, &r.type, &from, &len) == 4) {
      r.from = from;
      r.len = len;
      out.push_back(r);
    }
  }
  return out;
}

constexpr unsigned kCmdWrite = 1, kCmdWriteZeroes = 6;
constexpr unsigned kFlagFua = 1, kFlagNoHole = 2;

uint64_t allocated_bytes(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

class NbdDiscard : public ::testing::Test {
 protected:
  void TearDown() override {
    conn_.reset();
    vix::Library::exit();
  }

  void init(int port) {
    auto r = nbdtest::init_library_capturing_log(
        dir_.file("vixfs.conf"), "vixfs.nbd.server = 127.0.0.1:" + std::to_string(port) + "\n");
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto c = vix::Connection::connect(vix::ConnectSpec{}, false, "", "nbd");
    ASSERT_TRUE(c.ok()) << c.error().message;
    conn_ = std::move(c).value();
  }

  std::unique_ptr<vix::Disk> open(const std::string& name, uint32_t flags) {
    auto d = conn_->open(name, flags);
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d.ok() ? std::move(d).value() : nullptr;
  }

  // A writable qemu-nbd over a raw file that honours discards (--discard=unmap), tracing every
  // request it receives into its log.
  std::unique_ptr<PortServer> qemu_nbd(const std::string& raw, const std::string& export_name) {
    const int port = free_port();
    return std::make_unique<PortServer>(
        "qemu-nbd -f raw -x " + sh_quote(export_name) + " -b 127.0.0.1 -p " + std::to_string(port) +
            " -t --shared=8 --discard=unmap -T nbd_receive_request " + sh_quote(raw),
        port, log_);
  }

  std::string server_log() const { return vixtest::run("cat " + sh_quote(log_)).output; }
  void clear_server_log() { vixtest::write_file(log_, std::string()); }

  TempDir dir_;
  std::string log_ = dir_.file("server.log");
  std::unique_ptr<vix::Connection> conn_;
};

TEST_F(NbdDiscard, UnmapReadsBackZerosAndPunchesAHoleInTheServedFile) {
  const std::string raw = dir_.file("d.raw");
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 8M");
  run_ok("qemu-io -f raw -c 'write -P 0x5a 0 8M' " + sh_quote(raw));
  const uint64_t before = allocated_bytes(raw);
  ASSERT_GE(before, 8u << 20);
  auto srv = qemu_nbd(raw, "d.raw");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init(srv->port());
  auto disk = open("d.raw", 0);
  ASSERT_TRUE(disk);
  ASSERT_FALSE(disk->read_only());

  // Neither end on a 4 KiB boundary.
  const uint64_t first = 1001, count = 6003;
  auto u = disk->unmap(first, count);
  ASSERT_TRUE(u.ok()) << u.error().message;
  std::vector<uint8_t> all(8u << 20);
  ASSERT_TRUE(disk->read(0, all.size() / 512, all.data()).ok());
  for (uint64_t i = 0; i < all.size(); ++i) {
    const bool punched = i >= first * 512 && i < (first + count) * 512;
    ASSERT_EQ(all[i], punched ? 0 : 0x5a) << "byte " << i;
  }
  const vix::IoSnapshot io = disk->transport_stats();
  EXPECT_EQ(io.unmaps, 1u);
  EXPECT_EQ(io.unmap_bytes, count * 512);

  // What the server was asked: WRITE_ZEROES allowed to punch (no NO_HOLE flag).
  bool zeroes = false;
  for (const TracedRequest& r : traced_requests(server_log())) {
    if (r.type != kCmdWriteZeroes) continue;
    zeroes = true;
    EXPECT_EQ(r.flags & kFlagNoHole, 0u) << "WRITE_ZEROES at " << r.from << " forbids holes";
    EXPECT_GE(r.from, first * 512);
    EXPECT_LE(r.from + r.len, (first + count) * 512);
  }
  EXPECT_TRUE(zeroes) << server_log();

  // A read-only open cannot discard, and says so.
  auto ro = open("d.raw", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(ro);
  auto refused = ro->device().unmap(0, 8);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, VIX_E_FILE_READ_ONLY) << refused.error().message;
  ro.reset();
  disk.reset();
  srv->stop();

  // The file itself: zeros exactly there (qemu-io as the oracle), and storage given back.
  const auto file = vixtest::read_file(raw);
  ASSERT_EQ(file.size(), all.size());
  EXPECT_TRUE(file == all);
  const std::string check = run_ok("qemu-io -f raw -c 'read -P 0 " + std::to_string(first * 512) +
                                   " " + std::to_string(count * 512) + "' -c 'read -P 0x5a 0 " +
                                   std::to_string(first * 512) + "' " + sh_quote(raw));
  EXPECT_EQ(check.find("fail"), std::string::npos) << check;
  EXPECT_LE(allocated_bytes(raw), before - (2u << 20))
      << "the punched range still holds storage: " << allocated_bytes(raw) << " of " << before;
}

TEST_F(NbdDiscard, UnbufferedWritesCarryFuaAndBufferedOnesDoNot) {
  const std::string raw = dir_.file("f.raw");
  run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 8M");
  auto srv = qemu_nbd(raw, "f.raw");
  ASSERT_TRUE(srv->ready()) << srv->log();
  init(srv->port());
  std::vector<uint8_t> data(3u << 20);  // big enough to be spread over the pool
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + i / 512);

  auto count_writes = [&](unsigned* fua, unsigned* plain) {
    *fua = *plain = 0;
    for (const TracedRequest& r : traced_requests(server_log())) {
      if (r.type == kCmdWrite) ++*((r.flags & kFlagFua) ? fua : plain);
    }
  };
  {
    auto disk = open("f.raw", VIXDISKLIB_FLAG_OPEN_UNBUFFERED);
    ASSERT_TRUE(disk);
    clear_server_log();
    ASSERT_TRUE(disk->write(7, data.size() / 512, data.data()).ok());
    ASSERT_TRUE(disk->write(1, 1, data.data()).ok());
    unsigned fua = 0, plain = 0;
    count_writes(&fua, &plain);
    EXPECT_GE(fua, 2u) << server_log();
    EXPECT_EQ(plain, 0u) << "an UNBUFFERED write went without FUA:\n" << server_log();
    EXPECT_NE(nbdtest::captured().find("write-through (FUA)"), std::string::npos)
        << nbdtest::captured();
  }
  {
    auto disk = open("f.raw", 0);
    ASSERT_TRUE(disk);
    clear_server_log();
    ASSERT_TRUE(disk->write(7, data.size() / 512, data.data()).ok());
    unsigned fua = 0, plain = 0;
    count_writes(&fua, &plain);
    EXPECT_GE(plain, 1u) << server_log();
    EXPECT_EQ(fua, 0u) << "a buffered write carried FUA:\n" << server_log();
    ASSERT_TRUE(disk->flush().ok());
  }
  srv->stop();
  const auto file = vixtest::read_file(raw);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + 7 * 512));
}

// A server that cannot write zeroes (nbdkit's nozero filter) but still advertises TRIM: TRIM
// alone may leave the old bytes readable, so discard is not offered, and nothing changes.
TEST_F(NbdDiscard, ServerWithoutWriteZeroesCannotDiscard) {
  const int port = free_port();
  PortServer srv(
      "nbdkit -f -i 127.0.0.1 -p " + std::to_string(port) +
          " --filter=log --filter=nozero memory 4M logfile=" + sh_quote(dir_.file("nbdkit.log")),
      port, log_);
  ASSERT_TRUE(srv.ready()) << srv.log();
  init(port);
  auto disk = open("m", 0);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> data(64 * 1024, 0x77);
  ASSERT_TRUE(disk->write(128, data.size() / 512, data.data()).ok());
  const std::string connect = run_ok("cat " + sh_quote(dir_.file("nbdkit.log")));
  ASSERT_NE(connect.find("trim=1"), std::string::npos) << connect;  // TRIM is there...
  ASSERT_NE(connect.find("zero=0"), std::string::npos) << connect;  // ...WRITE_ZEROES is not

  auto probe = disk->unmap(0, 0);
  ASSERT_FALSE(probe.ok());
  EXPECT_EQ(probe.error().code, VIX_E_NOT_SUPPORTED);
  auto u = disk->unmap(128, data.size() / 512);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error().code, VIX_E_NOT_SUPPORTED) << u.error().message;
  EXPECT_NE(u.error().message.find("TRIM"), std::string::npos) << u.error().message;
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(disk->read(128, back.size() / 512, back.data()).ok());
  EXPECT_TRUE(back == data);
  EXPECT_EQ(disk->transport_stats().unmaps, 0u);
  const std::string log = run_ok("cat " + sh_quote(dir_.file("nbdkit.log")));
  EXPECT_EQ(log.find(" Trim "), std::string::npos) << log;
}

// UNBUFFERED on a server without FUA (nbdkit's fua filter, whose default fuamode=none hides it):
// each write is followed by a FLUSH, so it is still durable on return.
TEST_F(NbdDiscard, UnbufferedWithoutServerFuaFlushesAfterEachWrite) {
  const int port = free_port();
  const std::string nlog = dir_.file("nbdkit.log");
  PortServer srv("nbdkit -f -i 127.0.0.1 -p " + std::to_string(port) +
                     " --filter=log --filter=fua memory 4M logfile=" + sh_quote(nlog),
                 port, log_);
  ASSERT_TRUE(srv.ready()) << srv.log();
  init(port);
  auto disk = open("m", VIXDISKLIB_FLAG_OPEN_UNBUFFERED);
  ASSERT_TRUE(disk);
  std::vector<uint8_t> data(4096, 0x42);
  ASSERT_TRUE(disk->write(8, 8, data.data()).ok());
  const std::string log = run_ok("cat " + sh_quote(nlog));
  ASSERT_NE(log.find("fua=0"), std::string::npos) << log;  // the server offers no FUA
  const size_t w = log.find(" Write ");
  ASSERT_NE(w, std::string::npos) << log;
  EXPECT_NE(log.find(" Flush ", w), std::string::npos) << "no FLUSH after the write:\n" << log;
  EXPECT_NE(nbdtest::captured().find("write-through (FLUSH per write)"), std::string::npos)
      << nbdtest::captured();
}

}  // namespace
