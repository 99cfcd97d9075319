// The https transport (src/transports/https.cc).
//
// Its ByteSource against a small HTTPS server of the test's own (Python's http.server over TLS)
// that can misbehave: range reads split into requests (of at most 2 MiB here, 4 MiB by default,
// so that a small file makes several), several in flight, one retry after a dropped connection,
// and every lie (ignored Range, wrong Content-Range, short or long body) an error rather than
// wrong bytes. Then the transport through the chain with `https` as the only mode, against vcsim's
// datastore file service: qemu-img's bytes for a flat and a split sparse disk, and a refusal
// that names the mode.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "support/fixtures.h"
#include "support/process.h"
#include "support/vsphere_sim.h"
#include "transports/https.h"
#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vixDiskLib.h"

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

constexpr size_t kFileSize = (7u << 20) + 123;

// Every path serves the same bytes; the path says how to lie about them.
constexpr const char* kServer = R"PY(
import http.server, socketserver, ssl, sys, threading
cert, key, portfile = sys.argv[1:4]
N = 7 * 1024 * 1024 + 123
DATA = (bytes(range(251)) * (N // 251 + 1))[:N]
drops = {}
conns = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def setup(self):
        global conns
        with lock:
            conns += 1
        super().setup()
    def name(self): return self.path.split('?')[0].rsplit('/', 1)[-1]
    def do_HEAD(self):
        self.send_response(200)
        self.send_header('Content-Length', str(N))
        self.end_headers()
    def do_GET(self):
        name = self.name()
        if name == 'connections':
            body = str(conns).encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if name == 'session.bin' and 'vmware_soap_session=fresh' not in self.headers.get('Cookie', ''):
            self.send_response(401)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        if name == 'drop.bin':
            with lock:
                drops[name] = drops.get(name, 0) + 1
                first = drops[name] == 1
            if first:
                self.close_connection = True
                self.connection.shutdown(2)
                return
        rng = self.headers.get('Range', '')
        a, b = [int(x) for x in rng[len('bytes='):].split('-')]
        body = DATA[a:b + 1]
        if name == 'ignore.bin':
            self.send_response(200)
            self.send_header('Content-Length', str(N))
            self.end_headers()
            self.wfile.write(DATA)
            return
        cr = 'bytes %d-%d/%d' % (a, b, N)
        if name == 'badrange.bin':
            cr = 'bytes %d-%d/%d' % (a + 512, b + 512, N)
        if name == 'short.bin':
            body = body[:len(body) // 2]
        if name == 'long.bin':
            body = body + b'x' * 100
        self.send_response(206)
        self.send_header('Content-Range', cr)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
open(portfile + '.tmp', 'w').write(str(s.server_address[1]))
import os; os.rename(portfile + '.tmp', portfile)
s.serve_forever()
)PY";

class HttpsSource : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string cert = dir_->file("cert.pem"), key = dir_->file("key.pem");
    run_ok("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout " +
           sh_quote(key) + " -out " + sh_quote(cert) + " 2>&1");
    std::string fp = run_ok("openssl x509 -noout -fingerprint -sha256 -in " + sh_quote(cert));
    thumbprint_ = fp.substr(fp.find('=') + 1);
    while (!thumbprint_.empty() && isspace(static_cast<unsigned char>(thumbprint_.back())))
      thumbprint_.pop_back();
    vixtest::write_file(dir_->file("server.py"), std::string(kServer));
    const std::string portfile = dir_->file("port");
    server_ = new vixtest::Child(
        {{"python3", dir_->file("server.py"), cert, key, portfile}, "", {}, dir_->file("log")});
    if (server_->wait_for_file(portfile, std::chrono::seconds(5))) {
      std::ifstream in(portfile);
      std::getline(in, port_);
    }
    for (size_t i = 0; i < kFileSize; ++i) expected_.push_back(static_cast<uint8_t>(i % 251));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_FALSE(port_.empty()) << "the test HTTPS server did not start: " << server_->log();
  }

  static std::unique_ptr<vix::SourceOpener> opener(
      const std::string& thumbprint = thumbprint_,
      std::function<vix::Result<std::string>(const std::string&)> renew = nullptr) {
    vix::HttpsOptions o;
    o.tls.thumbprint = thumbprint;
    o.tls.connect_timeout_ms = 5000;
    o.tls.timeout_ms = 20000;
    o.endpoint = "https://127.0.0.1:" + port_ + "/sdk";
    o.dc_path = "DC0";
    o.datastore = "ds";
    o.cookie = "abc";
    o.renew_cookie = std::move(renew);
    o.max_request = 2u << 20;  // a 5 MiB read is then three requests
    return vix::make_https_opener(o);
  }

  static TempDir* dir_;
  static std::string thumbprint_, port_;
  static vixtest::Child* server_;
  static std::vector<uint8_t> expected_;
};
TempDir* HttpsSource::dir_ = nullptr;
std::string HttpsSource::thumbprint_, HttpsSource::port_;
vixtest::Child* HttpsSource::server_ = nullptr;
std::vector<uint8_t> HttpsSource::expected_;

TEST_F(HttpsSource, LargeReadSplitsIntoRangesAndMatches) {
  auto op = opener();
  ASSERT_TRUE(op);
  auto src = op->open("vm/good.bin", {});
  ASSERT_TRUE(src.ok()) << src.error().message;
  auto size = (*src)->size();
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, kFileSize);
  // 5 MiB + a bit at an odd offset: three requests in flight.
  std::vector<uint8_t> buf((5u << 20) + 77);
  auto n = (*src)->pread(buf.data(), buf.size(), 1001);
  ASSERT_TRUE(n.ok()) << n.error().message;
  ASSERT_EQ(*n, buf.size());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expected_.begin() + 1001));
  // Past the end: short, then zero.
  auto tail = (*src)->pread(buf.data(), 1000, kFileSize - 10);
  ASSERT_TRUE(tail.ok()) << tail.error().message;
  EXPECT_EQ(*tail, 10u);
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 10, expected_.end() - 10));
  auto past = (*src)->pread(buf.data(), 10, kFileSize);
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(*past, 0u);
  // Read-only.
  auto w = (*src)->pwrite(buf.data(), 1, 0);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_FILE_READ_ONLY);
  EXPECT_EQ(op->open("vm/good.bin", {.writable = true}).error().code, VIX_E_FILE_READ_ONLY);
}

// Connections accepted by the test server so far.
int server_connections(const std::string& port) {
  return std::atoi(run_ok("curl -sSk https://127.0.0.1:" + port + "/connections").c_str());
}

// Many threads reading at once (the cache's prefetchers, FUSE's readers) keep their keep-alive
// connections: a new TLS connection per request was what made https slow.
TEST_F(HttpsSource, ConcurrentReadersReuseTheirConnections) {
  auto op = opener();
  ASSERT_TRUE(op);
  auto src = op->open("vm/good.bin", {});
  ASSERT_TRUE(src.ok()) << src.error().message;
  const int before = server_connections(port_);
  constexpr int kThreads = 8, kReads = 24;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> buf(64 * 1024);
      for (int i = 0; i < kReads; ++i) {
        const uint64_t off =
            (static_cast<uint64_t>(t * kReads + i) * 28001) % (kFileSize - buf.size());
        auto n = (*src)->pread(buf.data(), buf.size(), off);
        if (!n.ok() || *n != buf.size() ||
            !std::equal(buf.begin(), buf.end(), expected_.begin() + static_cast<long>(off))) {
          ++bad;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  // One connection per concurrent reader at most (plus the count's own), not one per request.
  const int opened = server_connections(port_) - before - 1;
  EXPECT_LE(opened, kThreads) << kThreads * kReads << " requests";
  EXPECT_GE(opened, 1);
}

TEST_F(HttpsSource, SiblingNamesResolveInTheDescriptorsFolder) {
  auto op = opener();
  ASSERT_TRUE(op);
  EXPECT_EQ(op->resolve("vm/disk.vmdk", "disk-flat.vmdk"), "vm/disk-flat.vmdk");
  EXPECT_EQ(op->resolve("[ds] vm/disk.vmdk", "base.vmdk"), "[ds] vm/base.vmdk");
  EXPECT_EQ(op->resolve("vm/disk.vmdk", "[other] x/base.vmdk"), "[other] x/base.vmdk");
}

TEST_F(HttpsSource, DroppedConnectionIsRetriedOnce) {
  auto op = opener();
  ASSERT_TRUE(op);
  auto src = op->open("vm/drop.bin", {});
  ASSERT_TRUE(src.ok()) << src.error().message;
  std::vector<uint8_t> buf(4096);
  auto n = (*src)->pread(buf.data(), buf.size(), 12345);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expected_.begin() + 12345));
}

TEST_F(HttpsSource, LyingAnswersAreErrorsNotBytes) {
  auto op = opener();
  ASSERT_TRUE(op);
  const std::pair<const char*, const char*> cases[] = {
      {"ignore.bin", "HTTP 200 to a range request"},
      {"badrange.bin", "Content-Range"},
      {"short.bin", "short body"},
      {"long.bin", "more than"},
  };
  for (const auto& [name, why] : cases) {
    auto src = op->open(std::string("vm/") + name, {});
    ASSERT_TRUE(src.ok()) << src.error().message;
    std::vector<uint8_t> buf(65536);
    auto n = (*src)->pread(buf.data(), buf.size(), 4096);
    ASSERT_FALSE(n.ok()) << name << " gave bytes";
    EXPECT_EQ(n.error().code, VIX_E_FILE_ERROR) << n.error().message;
    EXPECT_NE(n.error().message.find(name), std::string::npos) << n.error().message;
    EXPECT_NE(n.error().message.find(why), std::string::npos) << n.error().message;
  }
}

TEST_F(HttpsSource, WrongThumbprintNamesThePresentedOne) {
  auto op = opener(std::string(64, 'A'));
  ASSERT_TRUE(op);
  auto src = op->open("vm/good.bin", {});
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(src.error().message.find(thumbprint_), std::string::npos) << src.error().message;
}

}  // namespace

namespace {

// A session that expired under an open disk: the refused cookie is renewed once (however many
// requests were in flight with it) and the reads go on; without renewal, or when the renewed
// cookie is refused too, the error says the session was not accepted.
TEST_F(HttpsSource, RefusedCookieIsRenewedOnceAndTheReadGoesOn) {
  std::atomic<int> renewals{0};
  std::string seen;
  auto op = opener(thumbprint_, [&](const std::string& rejected) -> vix::Result<std::string> {
    ++renewals;
    seen = rejected;
    return std::string("fresh");
  });
  ASSERT_TRUE(op);
  auto src = op->open("vm/session.bin", {});
  ASSERT_TRUE(src.ok()) << src.error().message;
  std::vector<uint8_t> buf((5u << 20) + 77);  // three requests in flight with the stale cookie
  auto n = (*src)->pread(buf.data(), buf.size(), 1001);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expected_.begin() + 1001));
  EXPECT_EQ(renewals.load(), 1);
  EXPECT_EQ(seen, "abc");

  auto plain = opener();
  auto refused = plain->open("vm/session.bin", {});
  ASSERT_TRUE(refused.ok()) << refused.error().message;
  auto r = (*refused)->pread(buf.data(), 4096, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_NOT_CONNECTED) << r.error().message;

  auto stubborn = opener(thumbprint_, [](const std::string&) -> vix::Result<std::string> {
    return std::string("still-stale");
  });
  auto again = stubborn->open("vm/session.bin", {});
  ASSERT_TRUE(again.ok()) << again.error().message;
  r = (*again)->pread(buf.data(), 4096, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("session not accepted"), std::string::npos) << r.error().message;
}

}  // namespace

namespace {

// ---- through the chain ----------------------------------------------------------------------

class HttpsTransportLocal : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(vix::Library::init({}, "", "").ok()); }
  void TearDown() override { vix::Library::exit(); }
};

// https reads a datastore through a server: a local connection has none.
TEST_F(HttpsTransportLocal, LocalConnectionIsRefusedNamingTheMode) {
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, true, "", "https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("/nowhere/disk.vmdk", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().code, VIX_E_NOT_SUPPORTED) << disk.error().message;
  EXPECT_EQ(disk.error().message.rfind("https: ", 0), 0u) << disk.error().message;
}

class HttpsTransport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
    std::filesystem::create_directories(dir);
    // A flat extent is read as it is; a split sparse disk's extents are siblings the https
    // opener resolves in the descriptor's folder.
    run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " +
           sh_quote(dir + "/https-flat.vmdk") + " 6M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x3c 4096 2M' -c 'write -P 0xa5 5M 1536' " +
           sh_quote(dir + "/https-flat.vmdk"));
    run_ok("qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse " +
           sh_quote(dir + "/https-split.vmdk") + " 12M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x61 0 1M' -c 'write -P 0x9e 7M 3M' " +
           sh_quote(dir + "/https-split.vmdk"));
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_TRUE(vix::Library::init({}, "", "").ok());
  }
  void TearDown() override { vix::Library::exit(); }

  static vix::ConnectSpec spec() { return sim_->connect_spec(sim_->get("VCSIM_VM_DC0_H0_VM0")); }

  static Simulator* sim_;
  static std::string error_;
};
Simulator* HttpsTransport::sim_ = nullptr;
std::string HttpsTransport::error_;

TEST_F(HttpsTransport, FlatAndSplitSparseDisksEqualQemu) {
  auto conn = vix::Connection::connect(spec(), true, "", "https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0/";
  for (const std::string file : {"https-flat.vmdk", "https-split.vmdk"}) {
    SCOPED_TRACE(file);
    auto disk = (*conn)->open("[LocalDS_0] DC0_H0_VM0/" + file, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(), "https");
    EXPECT_STREQ(vix::transport_static_name((*disk)->transport_name()), "https");
    const auto want = vixtest::qemu_raw(dir + file);
    const uint64_t sectors = (*disk)->info().capacity_sectors;
    ASSERT_EQ(sectors * 512, want.size());
    // Odd-sized requests, so that reads cross grain and extent boundaries.
    std::vector<uint8_t> got(want.size());
    for (uint64_t s = 0; s < sectors; s += 3001) {
      auto r = (*disk)->read(s, std::min<uint64_t>(3001, sectors - s), got.data() + s * 512);
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    EXPECT_TRUE(got == want) << file << " through https differs from qemu-img";
  }
}

}  // namespace
