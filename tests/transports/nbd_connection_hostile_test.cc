// nbd::Connection against nbd_hostile_server.py, which breaks the protocol on purpose: every
// misbehaviour must give an error and a closed connection within seconds, never a crash, a hang
// or wrong bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "nbd/connection.h"
#include "support/fixtures.h"
#include "transports/nbd_connection_support.h"

namespace {

using namespace nbdconntest;
using vixtest::TempDir;
using Seconds = std::chrono::duration<double>;

// --- a hostile server ------------------------------------------------------------------------

class NbdConnectionHostile : public ::testing::Test {
 protected:
  std::unique_ptr<ServerProcess> hostile(const std::string& mode) {
    std::string sock = dir_.file(mode + ".sock");
    return std::make_unique<ServerProcess>(
        python() + " " +
            sh_quote(std::string(VIXFS_SOURCE_DIR) + "/tests/transports/nbd_hostile_server.py") +
            " " + sh_quote(sock) + " " + mode,
        unix_endpoint(sock), dir_.file(mode + ".log"));
  }
  // The system's interpreter when there is one: version-manager shims cost most of a second.
  static std::string python() {
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  }
  // Byte i of the hostile server's export.
  static uint8_t byte_at(uint64_t i) { return uint8_t(i % 251); }

  // Reads 64 KiB at 128 KiB and expects the connection to break with `code` and `words`.
  void expect_broken_read(const std::string& mode, VixError code, const std::string& words,
                          int64_t timeout_ms = 5000) {
    auto server = hostile(mode);
    ASSERT_TRUE(server->ready()) << server->log();
    auto c = open_export(server->where(), "x");
    ASSERT_OK(c);
    std::vector<uint8_t> buf(64 << 10);
    auto start = Clock::now();
    auto r = (*c)->read(128 << 10, buf.size(), buf.data(), timeout_ms);
    EXPECT_LT(Seconds(Clock::now() - start).count(), 3.0);
    ASSERT_FALSE(r.ok()) << mode;
    EXPECT_EQ(r.error().code, code) << r.error().message;
    EXPECT_NE(r.error().message.find(words), std::string::npos) << r.error().message;
    EXPECT_TRUE((*c)->broken()) << mode;
    auto again = (*c)->read(0, 4096, buf.data(), timeout_ms);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, VIX_E_HOST_TCP_CONN_LOST);
  }

  TempDir dir_;
};

TEST_F(NbdConnectionHostile, BadReplyMagic) {
  expect_broken_read("bad_magic", VIX_E_HOST_TCP_CONN_LOST, "bad reply magic 0xdeadbeef");
}

TEST_F(NbdConnectionHostile, ReplyForUnknownCookie) {
  expect_broken_read("unknown_cookie", VIX_E_HOST_TCP_CONN_LOST, "unknown cookie");
}

TEST_F(NbdConnectionHostile, ChunkOutsideTheRequest) {
  expect_broken_read("chunk_outside", VIX_E_HOST_TCP_CONN_LOST, "outside NBD_CMD_READ");
}

TEST_F(NbdConnectionHostile, ChunkLongerThanTheRequest) {
  expect_broken_read("chunk_too_long", VIX_E_HOST_TCP_CONN_LOST, "data chunk of 4294967280");
}

TEST_F(NbdConnectionHostile, ReplyNotCoveringTheRequest) {
  expect_broken_read("short_coverage", VIX_E_HOST_TCP_CONN_LOST, "covered 32768 of 65536");
}

TEST_F(NbdConnectionHostile, OverlappingChunks) {
  expect_broken_read("overlap_next", VIX_E_HOST_TCP_CONN_LOST, "overlapping");
  expect_broken_read("overlap_prev", VIX_E_HOST_TCP_CONN_LOST, "overlapping");
}

TEST_F(NbdConnectionHostile, ServerClosesMidReply) {
  expect_broken_read("close_mid_reply", VIX_E_HOST_TCP_CONN_LOST, "closed the connection");
}

TEST_F(NbdConnectionHostile, ServerNeverReplies) {
  expect_broken_read("never_reply", VIX_E_HOST_TCP_SOCKET_ERROR, "timed out after 300 ms", 300);
}

TEST_F(NbdConnectionHostile, BlockStatusForAnotherContext) {
  auto server = hostile("bad_context");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  ASSERT_TRUE((*c)->info().base_allocation);
  auto r = (*c)->block_status(0, 65536, 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("meta context 8"), std::string::npos) << r.error().message;
  EXPECT_TRUE((*c)->broken());
}

TEST_F(NbdConnectionHostile, BlockStatusExtentsAreClampedToTheRequest) {
  auto server = hostile("good");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  // The server answers [half data][whole length hole+zero]: the second runs past the end.
  auto r = (*c)->block_status(4096, 65536, 5000);
  ASSERT_OK(r);
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].offset, 4096u);
  EXPECT_EQ((*r)[0].length, 32768u);
  EXPECT_EQ((*r)[0].flags, 0u);
  EXPECT_EQ((*r)[1].offset, 4096u + 32768u);
  EXPECT_EQ((*r)[1].length, 32768u);
  EXPECT_EQ((*r)[1].flags, 3u);
}

TEST_F(NbdConnectionHostile, HugeOptionReplyIsRefused) {
  auto server = hostile("huge_option_reply");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_HOST_NETBLKDEV_HANDSHAKE);
  EXPECT_NE(c.error().message.find("2147483647 bytes"), std::string::npos) << c.error().message;
}

TEST_F(NbdConnectionHostile, InvalidBlockSizeIsRefused) {
  auto server = hostile("bad_block_size");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_HOST_NETBLKDEV_HANDSHAKE);
  EXPECT_NE(c.error().message.find("NBD_INFO_BLOCK_SIZE"), std::string::npos) << c.error().message;
}

TEST_F(NbdConnectionHostile, UnknownExportCarriesTheServersMessage) {
  auto server = hostile("unknown_export");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "[ds1] vm/disk.vmdk");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_FILE_NOT_FOUND);
  EXPECT_NE(c.error().message.find("'[ds1] vm/disk.vmdk'"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("no export called that here"), std::string::npos)
      << c.error().message;
}

TEST_F(NbdConnectionHostile, RefusedStartTlsNeverContinuesInPlainText) {
  auto server = hostile("good");
  ASSERT_TRUE(server->ready()) << server->log();
  auto stream = connect_stream(server->where(), deadline_after_ms(5000));
  ASSERT_OK(stream);
  bool upgraded = false;
  HandshakeOptions h;
  h.export_name = "x";
  h.start_tls = [&](std::unique_ptr<Stream> s) -> vix::Result<std::unique_ptr<Stream>> {
    upgraded = true;
    return s;
  };
  auto c = Connection::handshake(std::move(*stream), h);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(c.error().message.find("STARTTLS"), std::string::npos) << c.error().message;
  EXPECT_FALSE(upgraded);
}

TEST_F(NbdConnectionHostile, ExportNameFallbackWithSimpleReplies) {
  auto server = hostile("go_unsup");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  EXPECT_EQ((*c)->info().size, 1u << 20);
  EXPECT_FALSE((*c)->info().structured_replies);
  std::vector<uint8_t> buf(300 << 10);
  (*c)->set_max_request(64 << 10);
  ASSERT_OK((*c)->read(4096, buf.size(), buf.data(), 5000));
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], byte_at(4096 + i)) << i;
}

TEST_F(NbdConnectionHostile, ChunksInAnyOrderWithHolesAreReassembled) {
  auto server = hostile("pieces");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  (*c)->set_max_request(64 << 10);
  std::vector<uint8_t> buf(256 << 10, 0xee);
  ASSERT_OK((*c)->read(8192, buf.size(), buf.data(), 5000));
  for (size_t i = 0; i < buf.size(); ++i) {
    size_t in_req = i % (64 << 10);
    uint8_t want = in_req < (16 << 10) ? 0 : byte_at(8192 + i);
    ASSERT_EQ(buf[i], want) << i;
  }
}

TEST_F(NbdConnectionHostile, ErrorChunkFailsTheRequestOnly) {
  auto server = hostile("error_chunk");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  std::vector<uint8_t> buf(4096);
  auto r = (*c)->read(0, buf.size(), buf.data(), 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_FILE_ERROR);
  EXPECT_NE(r.error().message.find("EIO (server: disk on fire)"), std::string::npos)
      << r.error().message;
  EXPECT_FALSE((*c)->broken());
  ASSERT_OK((*c)->flush(5000));
}

TEST_F(NbdConnectionHostile, ManyRequestsInFlightFromManyThreads) {
  auto server = hostile("good");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  (*c)->set_max_request(4096);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> buf(200 << 10);
      for (int i = 0; i < 5; ++i) {
        uint64_t off = uint64_t(t * 100 + i * 17) << 10;
        if (!(*c)->read(off, buf.size(), buf.data(), 5000).ok()) {
          ++bad;
          continue;
        }
        for (size_t k = 0; k < buf.size(); ++k) {
          if (buf[k] != byte_at(off + k)) {
            ++bad;
            break;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(NbdConnectionHostile, UnknownChunkType) {
  expect_broken_read("unknown_chunk", VIX_E_HOST_TCP_CONN_LOST, "unknown reply chunk type 9");
}

TEST_F(NbdConnectionHostile, HugeBlockStatusChunkIsRefusedUnread) {
  auto server = hostile("huge_status");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  auto r = (*c)->block_status(0, 65536, 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST);
  EXPECT_NE(r.error().message.find("malformed block status chunk (2147483632 bytes)"),
            std::string::npos)
      << r.error().message;
}

TEST_F(NbdConnectionHostile, SilentServerTimesOutTheHandshake) {
  auto server = hostile("silent");
  ASSERT_TRUE(server->ready()) << server->log();
  auto stream = connect_stream(server->where(), deadline_after_ms(5000));
  ASSERT_OK(stream);
  HandshakeOptions h;
  h.export_name = "x";
  h.deadline = deadline_after_ms(300);
  auto start = Clock::now();
  auto c = Connection::handshake(std::move(*stream), h);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_HOST_TCP_SOCKET_ERROR);
  EXPECT_NE(c.error().message.find("timed out"), std::string::npos) << c.error().message;
  EXPECT_LT(Seconds(Clock::now() - start).count(), 2.0);
}

// One caller's timeout breaks the connection; callers without a deadline of their own must not
// hang on it: everything in flight fails as a lost connection.
TEST_F(NbdConnectionHostile, TimeoutFailsEveryRequestInFlight) {
  auto server = hostile("never_reply");
  ASSERT_TRUE(server->ready()) << server->log();
  auto c = open_export(server->where(), "x");
  ASSERT_OK(c);
  std::atomic<int> lost{0};
  std::vector<std::thread> waiting;
  for (int t = 0; t < 4; ++t) {
    waiting.emplace_back([&, t] {
      std::vector<uint8_t> buf(8192);
      auto r = (*c)->read(uint64_t(t) * 8192, buf.size(), buf.data(), 0);
      if (!r.ok() && r.error().code == VIX_E_HOST_TCP_CONN_LOST) ++lost;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::vector<uint8_t> buf(4096);
  auto start = Clock::now();
  auto r = (*c)->read(0, buf.size(), buf.data(), 200);
  for (auto& t : waiting) t.join();
  EXPECT_LT(Seconds(Clock::now() - start).count(), 2.0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_SOCKET_ERROR);
  EXPECT_EQ(lost.load(), 4);
}

TEST_F(NbdConnectionHostile, ClosingSendsDisconnect) {
  auto server = hostile("good");
  ASSERT_TRUE(server->ready()) << server->log();
  std::string mark = dir_.file("good.sock.disc");
  {
    auto c = open_export(server->where(), "x");
    ASSERT_OK(c);
    std::vector<uint8_t> buf(4096);
    ASSERT_OK((*c)->read(0, buf.size(), buf.data(), 5000));
    EXPECT_FALSE(std::filesystem::exists(mark));
  }
  auto until = Clock::now() + std::chrono::seconds(3);
  while (!std::filesystem::exists(mark) && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(std::filesystem::exists(mark));
}

}  // namespace
