// nbdssl's TLS layer (src/nbd/tls.cc) against real TLS servers: `openssl s_server -rev` for the
// stream itself, nbdkit and qemu-nbd for STARTTLS end to end. Certificates are made at test time
// with the openssl CLI: a CA with a server certificate for 127.0.0.1 / localhost, and a
// self-signed one as an ESXi host would present.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nbd/connection.h"
#include "net/stream.h"
#include "net/tls.h"
#include "net/tls_psk.h"
#include "support/fixtures.h"
#include "support/process.h"

namespace {

using namespace std::chrono_literals;
using vix::net::Deadline;
using vix::net::Stream;
using vix::net::TlsOptions;
using vixtest::run_ok;
using vixtest::sh_quote;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// The certificates every test shares, made once per run.
struct Certs {
  vixtest::TempDir dir;
  std::string ca, server_cert, server_key, self_cert, self_key;
  std::string self_sha1, self_sha256, server_sha256;

  Certs() {
    const std::string d = sh_quote(dir.path());
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
    run_ok("cd " + d + " && openssl req -x509 " + ec +
           " -keyout ca-key.pem -out ca-cert.pem -subj /CN=vixfs-test-ca");
    run_ok("cd " + d + " && openssl req -new " + ec +
           " -keyout server-key.pem -out server.csr -subj /CN=localhost");
    vixtest::write_file(dir.file("ext.cnf"),
                        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                        "basicConstraints=CA:FALSE\n"
                        "keyUsage=critical,digitalSignature\n"
                        "extendedKeyUsage=serverAuth\n");
    run_ok("cd " + d +
           " && openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem "
           "-CAcreateserial -days 2 -extfile ext.cnf -out server-cert.pem");
    run_ok("cd " + d + " && openssl req -x509 " + ec +
           " -keyout self-key.pem -out self-cert.pem -subj /CN=esxi.example");
    ca = dir.file("ca-cert.pem");
    server_cert = dir.file("server-cert.pem");
    server_key = dir.file("server-key.pem");
    self_cert = dir.file("self-cert.pem");
    self_key = dir.file("self-key.pem");
    self_sha1 = fingerprint(self_cert, "sha1");
    self_sha256 = fingerprint(self_cert, "sha256");
    server_sha256 = fingerprint(server_cert, "sha256");
  }

  // "AA:BB:..." as the openssl CLI prints it.
  static std::string fingerprint(const std::string& cert, const std::string& md) {
    std::string out = run_ok("openssl x509 -noout -fingerprint -" + md + " -in " + sh_quote(cert));
    size_t eq = out.find('=');
    return eq == std::string::npos ? "" : trim(out.substr(eq + 1));
  }
};

Certs& certs() {
  static Certs c;  // made once per run, removed at exit
  return c;
}

std::string lower_bare(const std::string& thumb) {
  std::string out;
  for (char c : thumb) {
    if (c != ':') out += char(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

Deadline in(std::chrono::milliseconds ms) {
  return vix::net::Clock::now() + ms;
}

std::unique_ptr<Stream> connect_plain(int port) {
  auto ep = vix::net::parse_endpoint("127.0.0.1:" + std::to_string(port), 10809);
  EXPECT_TRUE(ep.ok());
  if (!ep.ok()) return nullptr;
  auto s = vix::net::connect_stream(*ep, in(10s));
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.ok() ? std::move(s).value() : nullptr;
}

// `openssl s_server -rev`: answers each line with the line reversed.
class NbdTlsStream : public ::testing::Test {
 protected:
  void start_server(const std::string& cert, const std::string& key,
                    const std::string& extra = "") {
    port_ = vixtest::free_port();
    server_ = std::make_unique<vixtest::PortServer>(
        "openssl s_server -accept 127.0.0.1:" + std::to_string(port_) + " -cert " + sh_quote(cert) +
            " -key " + sh_quote(key) + " -rev " + extra + " </dev/null",
        port_, log_dir_.file("s_server.log"));
    ASSERT_TRUE(server_->ready()) << server_->log();
  }

  vix::Result<std::unique_ptr<Stream>> upgrade(const TlsOptions& options,
                                               std::chrono::milliseconds timeout = 10s) {
    auto plain = connect_plain(port_);
    if (!plain) return vix::fail(VIX_E_FAIL, "no plain connection");
    return vix::net::start_tls(std::move(plain), options, in(timeout));
  }

  // One line through the server and back, reversed.
  static void expect_echo(Stream& s) {
    const std::string line = "hello nbdssl\n";
    ASSERT_TRUE(s.write_all(line.data(), line.size(), in(10s)).ok());
    std::string back(line.size(), '\0');
    auto r = s.read_exact(back.data(), back.size(), in(10s));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(back, "lssdbn olleh\n");
  }

  vixtest::TempDir log_dir_;
  int port_ = 0;
  std::unique_ptr<vixtest::PortServer> server_;
};

TEST_F(NbdTlsStream, PinnedSha1OfASelfSignedCertificateIsAccepted) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.thumbprints = {certs().self_sha1};
  o.server_name = "127.0.0.1";
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_echo(**s);
  // Released (NFC's nbd mode continues in plain text so): the socket changes hands, the TLS
  // stream is done.
  const int fd = (*s)->release_fd();
  EXPECT_GE(fd, 0);
  EXPECT_EQ((*s)->fd(), -1);
  char c = 0;
  EXPECT_FALSE((*s)->read_exact(&c, 1, vix::net::deadline_after_ms(1000)).ok());
  if (fd >= 0) ::close(fd);
}

TEST_F(NbdTlsStream, PinnedSha256AnyCaseWithoutColonsAmongOthersIsAccepted) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  // The set: an unset source, an unrelated pin, then the right one in another spelling.
  o.thumbprints = {"", certs().server_sha256, lower_bare(certs().self_sha256)};
  o.server_name = "no.such.name";  // a pin replaces the host-name check
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_echo(**s);
}

TEST_F(NbdTlsStream, WrongThumbprintIsRefusedShowingBothPresentedDigests) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.thumbprints = {certs().server_sha256};
  auto s = upgrade(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  const std::string& m = s.error().message;
  EXPECT_NE(m.find("thumbprint mismatch"), std::string::npos) << m;
  EXPECT_NE(m.find(certs().self_sha1), std::string::npos) << m;
  EXPECT_NE(m.find(certs().self_sha256), std::string::npos) << m;
  EXPECT_NE(m.find(certs().server_sha256), std::string::npos) << m;  // what was expected
  EXPECT_NE(m.find("127.0.0.1:" + std::to_string(port_)), std::string::npos) << m;
}

TEST_F(NbdTlsStream, CaFileVerifiesTheChainAndTheAddressOrName) {
  start_server(certs().server_cert, certs().server_key);
  for (const char* name : {"127.0.0.1", "localhost"}) {
    TlsOptions o;
    o.ca_file = certs().ca;
    o.server_name = name;
    auto s = upgrade(o);
    ASSERT_TRUE(s.ok()) << name << ": " << s.error().message;
    expect_echo(**s);
  }
}

TEST_F(NbdTlsStream, CaFileWithAnotherHostNameIsRefused) {
  start_server(certs().server_cert, certs().server_key);
  TlsOptions o;
  o.ca_file = certs().ca;
  o.server_name = "esxi-01.example";
  auto s = upgrade(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(s.error().message.find("mismatch"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find(certs().ca), std::string::npos) << s.error().message;
}

TEST_F(NbdTlsStream, CaFileRefusesACertificateItDidNotSign) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.ca_file = certs().ca;
  o.server_name = "127.0.0.1";
  auto s = upgrade(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(s.error().message.find("self-signed"), std::string::npos) << s.error().message;
}

TEST_F(NbdTlsStream, TlsOnePointTwoWorksAndOlderIsRefused) {
  start_server(certs().self_cert, certs().self_key, "-tls1_2");
  TlsOptions o;
  o.thumbprints = {certs().self_sha256};
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_echo(**s);
  s = vix::fail(VIX_E_FAIL, "");

  start_server(certs().self_cert, certs().self_key, "-tls1_1 -cipher DEFAULT@SECLEVEL=0");
  auto old = upgrade(o);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.error().code, VIX_E_CANNOT_CONNECT_TO_HOST) << old.error().message;
}

// nbdkit's gnutls picks TLS 1.3 for a PSK; older servers offer the TLS 1.2 PSK suites.
TEST_F(NbdTlsStream, PreSharedKeyOverTls12AndTls13) {
  const std::string key(64, 'c');
  const std::string psk = log_dir_.file("keys.psk");
  vixtest::write_file(psk, "bob:" + key + "\n");
  TlsOptions o;
  o.psk_file = psk;
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    start_server(certs().self_cert, certs().self_key,
                 std::string(version) + " -nocert -psk_identity bob -psk " + key);
    auto s = upgrade(o);
    ASSERT_TRUE(s.ok()) << version << ": " << s.error().message << "\n" << server_->log();
    expect_echo(**s);
  }
}

TEST_F(NbdTlsStream, PreSharedKeyAloneRefusesACertificate) {
  start_server(certs().self_cert, certs().self_key);
  const std::string psk = log_dir_.file("keys.psk");
  vixtest::write_file(psk, "bob:" + std::string(64, 'c') + "\n");
  TlsOptions o;
  o.psk_file = psk;
  auto s = upgrade(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(s.error().message.find("pre-shared key"), std::string::npos) << s.error().message;
}

TEST(NbdTls, NothingToVerifyAgainstIsRefusedBeforeAnyByte) {
  // A listener that is never served: the refusal must not need the peer at all.
  TlsOptions o;
  o.server_name = "127.0.0.1";
  o.thumbprints = {"", ""};
  auto checked = vix::net::check_tls_options(o);
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.error().code, VIX_E_INVALID_ARG);
  EXPECT_NE(checked.error().message.find("nothing to verify the server's certificate against"),
            std::string::npos);
  EXPECT_NE(checked.error().message.find("vixfs.nbd.thumbprint"), std::string::npos);

  vixtest::SilentListener listener;
  ASSERT_TRUE(listener.ok());
  auto plain = connect_plain(listener.port());
  ASSERT_TRUE(plain);
  auto s = vix::net::start_tls(std::move(plain), o, in(5s));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_INVALID_ARG);
  int cfd = listener.accept_one();
  ASSERT_GE(cfd, 0);
  char byte;
  EXPECT_LE(recv(cfd, &byte, 1, MSG_DONTWAIT), 0);  // no ClientHello was sent
  close(cfd);
}

TEST(NbdTls, MalformedThumbprintIsAnInvalidArgument) {
  TlsOptions o;
  o.thumbprints = {"AA:BB:CC"};
  auto r = vix::net::check_tls_options(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_INVALID_ARG);
  EXPECT_NE(r.error().message.find("AA:BB:CC"), std::string::npos) << r.error().message;
}

TEST(NbdTls, HandshakeWithASilentServerTimesOutWithinTheDeadline) {
  vixtest::SilentListener listener;
  ASSERT_TRUE(listener.ok());
  auto plain = connect_plain(listener.port());
  ASSERT_TRUE(plain);
  int cfd = listener.accept_one();  // accepts, then never says a word
  TlsOptions o;
  o.thumbprints = {certs().self_sha1};
  auto t0 = std::chrono::steady_clock::now();
  auto s = vix::net::start_tls(std::move(plain), o, in(300ms));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_HOST_TCP_SOCKET_ERROR);
  EXPECT_NE(s.error().message.find("timed out"), std::string::npos) << s.error().message;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
  close(cfd);
}

TEST_F(NbdTlsStream, ReadPastTheDeadlineTimesOut) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.thumbprints = {certs().self_sha1};
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  char c;
  auto t0 = std::chrono::steady_clock::now();
  auto r = (*s)->read_exact(&c, 1, in(200ms));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_SOCKET_ERROR);
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST_F(NbdTlsStream, ShutdownWakesABlockedReaderAndLaterCallsFail) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.thumbprints = {certs().self_sha1};
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  Stream& stream = **s;
  auto reader = std::async(std::launch::async, [&]() -> vix::Result<void> {
    char c;
    return stream.read_exact(&c, 1, vix::net::kNoDeadline);
  });
  std::this_thread::sleep_for(100ms);
  stream.shutdown();
  ASSERT_EQ(reader.wait_for(2s), std::future_status::ready);
  auto r = reader.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST);
  stream.shutdown();  // idempotent
  auto w = stream.write_all("x", 1, in(1s));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_HOST_TCP_CONN_LOST);
}

TEST_F(NbdTlsStream, ServerGoneIsConnectionLost) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.thumbprints = {certs().self_sha1};
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  expect_echo(**s);
  server_->stop();
  char c;
  auto r = (*s)->read_exact(&c, 1, in(5s));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST) << r.error().message;
  // Writing to the dead peer fails as a value, not as SIGPIPE.
  std::vector<char> junk(1 << 20, 'x');
  auto w = (*s)->write_all(junk.data(), junk.size(), in(5s));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_HOST_TCP_CONN_LOST) << w.error().message;
}

// The NBD reader thread and a writer on one stream at once, as a Connection runs them: 8 MiB each
// way in pieces, so both threads are inside the SSL object's calls over and over; a writer alone
// would also stall once the server's replies fill the socket buffers.
TEST_F(NbdTlsStream, OneReaderAndOneWriterRunConcurrently) {
  start_server(certs().self_cert, certs().self_key);
  TlsOptions o;
  o.thumbprints = {certs().self_sha256};
  auto s = upgrade(o);
  ASSERT_TRUE(s.ok()) << s.error().message;
  Stream& stream = **s;

  constexpr size_t kLine = 128, kLines = 64 * 1024;  // 8 MiB each way
  std::string sent, expected;
  sent.reserve(kLine * kLines);
  expected.reserve(kLine * kLines);
  for (size_t i = 0; i < kLines; ++i) {
    std::string line = "line " + std::to_string(i) + " ";
    line.resize(kLine - 1, char('a' + i % 26));
    sent += line + "\n";
    expected += std::string(line.rbegin(), line.rend()) + "\n";
  }
  const Deadline deadline = in(60s);
  auto writer = std::async(std::launch::async, [&]() -> vix::Result<void> {
    for (size_t off = 0; off < sent.size(); off += 48 * 1024) {
      size_t n = std::min<size_t>(48 * 1024, sent.size() - off);
      VIX_TRY(stream.write_all(sent.data() + off, n, deadline));
    }
    return vix::ok();
  });
  std::string got(expected.size(), '\0');
  auto reader = std::async(std::launch::async, [&]() -> vix::Result<void> {
    for (size_t off = 0; off < got.size(); off += 100 * 1000) {
      size_t n = std::min<size_t>(100 * 1000, got.size() - off);
      VIX_TRY(stream.read_exact(got.data() + off, n, deadline));
    }
    return vix::ok();
  });
  auto w = writer.get();
  auto r = reader.get();
  ASSERT_TRUE(w.ok()) << w.error().message;
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(got == expected);
}

TEST(NbdTlsPsk, ReadsTheFirstIdentityAndRefusesMalformedFiles) {
  vixtest::TempDir dir;
  vixtest::write_file(dir.file("ok.psk"), "\nalice:0123456789abcdefABCDEF\nbob:00\n");
  auto psk = vix::net::read_psk_file(dir.file("ok.psk"));
  ASSERT_TRUE(psk.ok()) << psk.error().message;
  EXPECT_EQ(psk->identity, "alice");
  EXPECT_EQ(psk->key, (std::vector<unsigned char>{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                                  0xab, 0xcd, 0xef}));
  for (const char* bad : {"alice\n", ":00\n", "alice:0\n", "alice:zz\n", "alice:\n", ""}) {
    vixtest::write_file(dir.file("bad.psk"), std::string(bad));
    auto r = vix::net::read_psk_file(dir.file("bad.psk"));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, VIX_E_INVALID_ARG);
    EXPECT_NE(r.error().message.find("bad.psk"), std::string::npos) << r.error().message;
  }
  auto missing = vix::net::read_psk_file(dir.file("missing.psk"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, VIX_E_FILE_NOT_FOUND);
}

// STARTTLS end to end: nbd::Connection's handshake with start_tls as nbdssl installs it.
class NbdTlsEndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new vixtest::TempDir;
    raw_ = dir_->file("disk.img");
    run_ok("qemu-img create -q -f raw " + sh_quote(raw_) + " 8M");
    run_ok("qemu-io -f raw -c 'write -P 0x3c 0 1M' -c 'write -P 0xa5 5M 64k' " + sh_quote(raw_));
    vmdk_ = dir_->file("disk.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(vmdk_) + " 48M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x42 1M 3M' -c 'write -P 0x99 40M 8M' " + sh_quote(vmdk_));
    // Before any server holds the image open (qemu-img then waits on its lock).
    raw_bytes_ = new std::vector<uint8_t>(vixtest::qemu_raw(raw_, "raw"));
    vmdk_bytes_ = new std::vector<uint8_t>(vixtest::qemu_raw(vmdk_));
  }
  static void TearDownTestSuite() {
    delete raw_bytes_;
    delete vmdk_bytes_;
    delete dir_;
    dir_ = nullptr;
  }

  void start(const std::string& command_without_port) {
    port_ = vixtest::free_port();
    std::string cmd = command_without_port;
    size_t at = cmd.find("@PORT@");
    if (at != std::string::npos) cmd.replace(at, 6, std::to_string(port_));
    server_ = std::make_unique<vixtest::PortServer>(cmd, port_, log_.file("server.log"));
    ASSERT_TRUE(server_->ready()) << cmd << "\n" << server_->log();
  }

  vix::Result<std::unique_ptr<vix::nbd::Connection>> open(const TlsOptions& tls,
                                                          const std::string& export_name = "") {
    auto plain = connect_plain(port_);
    if (!plain) return vix::fail(VIX_E_FAIL, "no plain connection");
    vix::nbd::HandshakeOptions h;
    h.export_name = export_name;
    h.deadline = in(15s);
    h.start_tls = [tls, deadline = h.deadline](std::unique_ptr<Stream> s) {
      return vix::net::start_tls(std::move(s), tls, deadline);
    };
    return vix::nbd::Connection::handshake(std::move(plain), h);
  }

  static void expect_reads(vix::nbd::Connection& c, const std::vector<uint8_t>& expected) {
    ASSERT_EQ(c.info().size, expected.size());
    std::vector<uint8_t> got(expected.size(), 0xee);
    auto r = c.read(0, got.size(), got.data(), 20000);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(got == expected);
  }

  static std::string nbdkit_tls() {
    return "nbdkit -f -i 127.0.0.1 -p @PORT@ --tls=require --tls-certificates=" +
           sh_quote(certs().dir.path()) + " file " + sh_quote(raw_);
  }

  static inline vixtest::TempDir* dir_ = nullptr;
  static inline std::string raw_, vmdk_;
  static inline std::vector<uint8_t>*raw_bytes_ = nullptr, *vmdk_bytes_ = nullptr;
  vixtest::TempDir log_;
  int port_ = 0;
  std::unique_ptr<vixtest::PortServer> server_;
};

TEST_F(NbdTlsEndToEnd, NbdkitWithCaFileServesTheFileBytes) {
  start(nbdkit_tls());
  TlsOptions o;
  o.ca_file = certs().ca;
  o.server_name = "127.0.0.1";
  auto c = open(o);
  ASSERT_TRUE(c.ok()) << c.error().message << "\n" << server_->log();
  expect_reads(**c, *raw_bytes_);
}

TEST_F(NbdTlsEndToEnd, NbdkitWithAWrongPinIsRefusedAndNothingIsRead) {
  start(nbdkit_tls());
  TlsOptions o;
  o.thumbprints = {certs().self_sha256};
  auto c = open(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(c.error().message.find(certs().server_sha256), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find(Certs::fingerprint(certs().server_cert, "sha1")),
            std::string::npos)
      << c.error().message;
}

TEST_F(NbdTlsEndToEnd, QemuNbdWithAPinnedThumbprintServesTheVmdkAsQemuImgReadsIt) {
  start(
      "qemu-nbd -f vmdk -x disk -b 127.0.0.1 -p @PORT@ -t --read-only --shared=8 "
      "--object tls-creds-x509,id=t0,endpoint=server,dir=" +
      certs().dir.path() + ",verify-peer=off --tls-creds t0 " + sh_quote(vmdk_));
  TlsOptions o;
  o.thumbprints = {certs().server_sha256};
  o.server_name = "127.0.0.1";
  auto c = open(o, "disk");
  ASSERT_TRUE(c.ok()) << c.error().message << "\n" << server_->log();
  EXPECT_TRUE((*c)->info().read_only());
  // Small requests: many in flight at once, so the reader and the writer share the TLS stream.
  (*c)->set_max_request(64 * 1024);
  expect_reads(**c, *vmdk_bytes_);
  auto extents = (*c)->block_status(0, 48ull << 20, 20000);
  ASSERT_TRUE(extents.ok()) << extents.error().message;
  EXPECT_FALSE(extents->empty());
}

TEST_F(NbdTlsEndToEnd, NbdkitWithAPreSharedKey) {
  const std::string psk = log_.file("keys.psk");
  vixtest::write_file(psk, "alice:" + std::string(64, 'a') + "\n");
  start("nbdkit -f -i 127.0.0.1 -p @PORT@ --tls=require --tls-psk=" + sh_quote(psk) + " file " +
        sh_quote(raw_));
  TlsOptions o;
  o.psk_file = psk;
  auto c = open(o);
  ASSERT_TRUE(c.ok()) << c.error().message << "\n" << server_->log();
  expect_reads(**c, *raw_bytes_);

  // A key the server does not know fails the handshake.
  vixtest::write_file(psk + ".wrong", "alice:" + std::string(64, 'b') + "\n");
  o.psk_file = psk + ".wrong";
  auto wrong = open(o);
  ASSERT_FALSE(wrong.ok());
}

TEST_F(NbdTlsEndToEnd, PlainServerRefusingStartTlsIsAnError) {
  start("nbdkit -f -i 127.0.0.1 -p @PORT@ --tls=off file " + sh_quote(raw_));
  TlsOptions o;
  o.thumbprints = {certs().server_sha256};
  auto c = open(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(c.error().message.find("STARTTLS"), std::string::npos) << c.error().message;
}

TEST_F(NbdTlsEndToEnd, NbdkitOnAUnixSocketWithCaFileChecksTheChain) {
  // nbdkit without -f returns once it listens and leaves its pid in the pid file.
  const std::string sock = log_.file("nbdkit.sock"), pidfile = log_.file("nbdkit.pid");
  run_ok("nbdkit -U " + sh_quote(sock) + " -P " + sh_quote(pidfile) +
         " --tls=require --tls-certificates=" + sh_quote(certs().dir.path()) + " file " +
         sh_quote(raw_));
  struct Kill {
    std::string pidfile;
    ~Kill() { vixtest::run("kill $(cat " + sh_quote(pidfile) + ")"); }
  } kill{pidfile};
  auto ep = vix::net::parse_endpoint("unix:" + sock, 10809);
  ASSERT_TRUE(ep.ok());
  auto plain = vix::net::connect_stream(*ep, in(10s));
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  TlsOptions o;
  o.ca_file = certs().ca;  // no server name: the socket is local, the chain is what is checked
  vix::nbd::HandshakeOptions h;
  h.deadline = in(15s);
  h.start_tls = [o, deadline = h.deadline](std::unique_ptr<Stream> s) {
    return vix::net::start_tls(std::move(s), o, deadline);
  };
  auto c = vix::nbd::Connection::handshake(std::move(plain).value(), h);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ((*c)->peer(), "unix:" + sock);
  expect_reads(**c, *raw_bytes_);
}

}  // namespace
