// The https transport straight from the ESXi host (src/transports/https_host.cc,
// https_session.cc), against the simulator's -host-https listener (tests/vcsim/host_https.go):
// every sample disk read from the host with generic service tickets equals qemu-img's bytes and
// the vCenter's /folder is not used; refused tickets fall back to the vCenter with the reason
// logged; 503/429 answers are retried; single-use tickets are asked again; a host that accepts
// and never answers gives an error, not a hang; the requests in flight to one host stay within
// vixfs.https.connections whatever the number of disks; and a session that expires in the middle
// of a read is renewed on both paths.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "support/disk_read.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "support/sample_disks.h"
#include "support/vsphere_sim.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vsphere/client.h"

using vixtest::Simulator;
using vixtest::TempDir;

namespace {

std::mutex g_log_mu;
std::string g_log;  // what the library logged, every level

void capture(const char* fmt, va_list args) {
  char buf[4096];
  vsnprintf(buf, sizeof buf, fmt, args);
  std::lock_guard lock(g_log_mu);
  g_log += buf;
  if (g_log.empty() || g_log.back() != '\n') g_log += '\n';
}

std::string logged() {
  std::lock_guard lock(g_log_mu);
  return g_log;
}

using vixtest::SampleDisk;

int count_lines(const std::string& log, const std::string& prefix) {
  int n = 0;
  size_t pos = 0;
  while ((pos = log.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || log[pos - 1] == '\n') ++n;
    pos += prefix.size();
  }
  return n;
}

// No std::regex: GCC 12 with ASan warns inside <regex>, and -Werror stops the build.
int max_inflight(const std::string& log) {
  static const std::string kKey = "inflight=";
  int most = 0;
  for (size_t pos = log.find(kKey); pos != std::string::npos; pos = log.find(kKey, pos)) {
    pos += kKey.size();
    int n = 0;
    bool digits = false;
    for (; pos < log.size() && log[pos] >= '0' && log[pos] <= '9'; ++pos) {
      n = n * 10 + (log[pos] - '0');
      digits = true;
    }
    if (digits) most = std::max(most, n);
  }
  return most;
}

class HttpsHost : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    samples_ = new TempDir();
    sim_ = Simulator::start_with_samples(samples_->path(), 64, "-user u:p -host-https -folder-auth",
                                         &error_)
               .release();
    if (sim_ == nullptr) return;
    disks_ = new std::vector<SampleDisk>(vixtest::sample_disks(*sim_, &error_));
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete samples_;
    samples_ = nullptr;
    delete disks_;
    disks_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_NE(disks_, nullptr) << error_;
    ASSERT_GE(disks_->size(), 7u) << "the samples' disks, current and in snapshots";
    faults("");
    init({});
  }
  void TearDown() override {
    vix::Library::exit();
    faults("");
  }

  static void init(std::map<std::string, std::string> keys) {
    vix::Library::exit();
    {
      std::lock_guard lock(g_log_mu);
      g_log.clear();
    }
    vix::LogCallbacks cb;
    cb.log = capture;
    cb.warn = capture;
    auto r = vix::Library::init(cb, "", "", [keys](vix::Config& c) {
      c.set("vixDiskLib.transport.LogLevel", "4", "test");
      for (const auto& [k, v] : keys) c.set(k, v, "test");
    });
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  static void faults(const std::string& text) {
    std::string err;
    ASSERT_TRUE(sim_->set_host_https_faults(text, &err)) << err;
  }
  // The small sample disks (not the 64 GiB one).
  static std::vector<SampleDisk> small_disks() {
    std::vector<SampleDisk> out;
    for (const auto& d : *disks_)
      if (d.capacity <= (1ull << 30)) out.push_back(d);
    return out;
  }
  static const SampleDisk& flat_disk() {
    for (const auto& d : *disks_)
      if (d.local.find("DC0_C0_RP0_VM0/") != std::string::npos && d.snapshot.empty()) return d;
    return disks_->front();
  }
  static vix::Result<std::unique_ptr<vix::Connection>> connect(const SampleDisk& d) {
    return vix::Connection::connect(sim_->connect_spec(d.vm), true, d.snapshot, "https");
  }

  static TempDir* samples_;
  static Simulator* sim_;
  static std::vector<SampleDisk>* disks_;
  static std::string error_;
};
TempDir* HttpsHost::samples_ = nullptr;
Simulator* HttpsHost::sim_ = nullptr;
std::vector<SampleDisk>* HttpsHost::disks_ = nullptr;
std::string HttpsHost::error_;

TEST_F(HttpsHost, EverySampleDiskFromTheHostEqualsQemu) {
  const std::string before = sim_->host_https_log();
  size_t sesparse = 0;  // the VMFS6 VM's snapshot-1, snapshot-2 and current/ chains
  for (const SampleDisk& d : small_disks()) {
    sesparse += d.local.find("DC0_C0_RP0_VMFS6/") != std::string::npos;
  }
  EXPECT_EQ(sesparse, 3u);
  for (const SampleDisk& d : small_disks()) {
    SCOPED_TRACE(d.datastore_path + " " + d.snapshot);
    auto conn = connect(d);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(), "https");
    const auto want = vixtest::qemu_raw(d.local);
    ASSERT_EQ((*disk)->info().capacity_sectors * 512, want.size());
    EXPECT_TRUE(vixtest::read_all(**disk) == want);
  }
  const std::string log = sim_->host_https_log().substr(before.size());
  EXPECT_GT(count_lines(log, "host GET "), 0) << log;
  EXPECT_GT(count_lines(log, "ticket issued "), 0) << log;
  EXPECT_EQ(count_lines(log, "vcenter "), 0) << log;
  EXPECT_EQ(log.find(" 401\n"), std::string::npos) << log;
  EXPECT_NE(logged().find("reading straight from the host at 127.0.0.1:" +
                          sim_->get("VCSIM_HOST_HTTPS_PORT")),
            std::string::npos)
      << logged();
}

TEST_F(HttpsHost, RefusedTicketsFallBackToTheVCenterWithTheReasonLogged) {
  faults("refuse_tickets=1");
  const SampleDisk& d = flat_disk();
  const std::string before = sim_->host_https_log();
  auto conn = connect(d);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_TRUE(vixtest::read_all(**disk) == vixtest::qemu_raw(d.local));
  const std::string log = sim_->host_https_log().substr(before.size());
  EXPECT_GT(count_lines(log, "vcenter GET "), 0) << log;
  EXPECT_EQ(count_lines(log, "host GET "), 0) << log;
  const std::string lib = logged();
  EXPECT_NE(lib.find("not straight from the VM's host"), std::string::npos) << lib;
  EXPECT_NE(lib.find("refuse_tickets"), std::string::npos) << lib;  // the server's words
}

TEST_F(HttpsHost, DirectOffReadsThroughTheVCenter) {
  init({{"vixfs.https.direct", "0"}});
  const SampleDisk& d = flat_disk();
  const std::string before = sim_->host_https_log();
  auto conn = connect(d);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(1u << 20);
  ASSERT_TRUE((*disk)->read(0, buf.size() / 512, buf.data()).ok());
  const std::string log = sim_->host_https_log().substr(before.size());
  EXPECT_GT(count_lines(log, "vcenter GET "), 0) << log;
  EXPECT_EQ(count_lines(log, "host "), 0) << log;
}

TEST_F(HttpsHost, BusyAnswersAreRetriedAndTheBytesAreRight) {
  const SampleDisk& d = flat_disk();
  const auto want = vixtest::qemu_raw(d.local);
  for (const std::string f : {"status=503\nevery=3", "status=429\nevery=2\nretry_after=1"}) {
    SCOPED_TRACE(f);
    init({});
    faults(f);
    const std::string before = sim_->host_https_log();
    auto conn = connect(d);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    // A few large reads (several requests each) and the busy answers among them.
    std::vector<uint8_t> got(want.size());
    const uint64_t step = (12u << 20) / 512;
    const uint64_t sectors = want.size() / 512;
    for (uint64_t s = 0; s < sectors && s < 4 * step; s += step) {
      auto r = (*disk)->read(s, std::min(step, sectors - s), got.data() + s * 512);
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    const size_t n = std::min<size_t>(want.size(), 48u << 20);
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + static_cast<long>(n), want.begin()));
    const std::string code = f.substr(7, 3);
    const std::string log = sim_->host_https_log().substr(before.size());
    EXPECT_GT(count_lines(log, "host GET "), 0) << log;
    EXPECT_NE(log.find(" " + code + "\n"), std::string::npos) << log;
    EXPECT_GT((*disk)->transport_stats().link_counter("throttled"), 0u);
    EXPECT_NE(logged().find("HTTP " + code + " (server busy), retrying in"), std::string::npos)
        << logged();
  }
}

TEST_F(HttpsHost, SingleUseTicketsAreAskedAgain) {
  faults("single_use=1");
  const SampleDisk& d = flat_disk();
  auto conn = connect(d);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  const auto want = vixtest::qemu_raw(d.local);
  EXPECT_TRUE(vixtest::read_all(**disk, 8192) == want);
  EXPECT_GT((*disk)->transport_stats().link_counter("ticketRenewals"), 0u);
  EXPECT_EQ(logged().find("not straight from the VM's host"), std::string::npos) << logged();
}

// A host that accepted the request and never answers: the read fails after
// vixDiskLib.nfc.ReadTimeoutMs without data, long before the whole request's limit (10 min here,
// which ctest's timeout would stop first).
TEST_F(HttpsHost, HangingHostIsAnErrorNotAHang) {
  init({{"vixDiskLib.nfc.ReadTimeoutMs", "1500"}, {"vixfs.soap.timeoutMs", "600000"}});
  const SampleDisk& d = flat_disk();
  auto conn = connect(d);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  faults("hang=1");
  std::vector<uint8_t> buf(1u << 20);
  auto r = (*disk)->read(2048, buf.size() / 512, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST) << r.error().message;
  EXPECT_NE(r.error().message.find("vixDiskLib.nfc.ReadTimeoutMs"), std::string::npos)
      << r.error().message;
}

// Three disks read at once with vixfs.https.connections = 2: never more than 2 requests in
// flight at the host (every sample host is the one listener), where each disk alone would
// have had 2.
TEST_F(HttpsHost, RequestsInFlightToOneHostStayWithinTheBudget) {
  init({{"vixfs.https.connections", "2"}});
  faults("delay_ms=40");
  std::vector<SampleDisk> three;
  for (const auto& d : small_disks())
    if (three.size() < 3 && d.capacity >= (16u << 20)) three.push_back(d);
  ASSERT_EQ(three.size(), 3u);
  std::vector<std::unique_ptr<vix::Connection>> conns;
  std::vector<std::unique_ptr<vix::Disk>> disks;
  for (const auto& d : three) {
    auto conn = connect(d);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    conns.push_back(std::move(*conn));
    disks.push_back(std::move(*disk));
  }
  const std::string before = sim_->host_https_log();
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < disks.size(); ++i) {
    threads.emplace_back([&, i] {
      // 8 MiB reads: two 4 MiB requests each.
      std::vector<uint8_t> buf(8u << 20);
      for (int k = 0; k < 2; ++k)
        if (!disks[i]->read(k * (buf.size() / 512), buf.size() / 512, buf.data()).ok()) ++bad;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  const std::string log = sim_->host_https_log().substr(before.size());
  EXPECT_GT(count_lines(log, "host GET "), 6) << log;
  EXPECT_LE(max_inflight(log), 2) << log;
}

// A session the server expired in the middle of a long read: the vCenter path renews its
// cookie, the host path its tickets (after the client logs in again), and the read goes on.
TEST(HttpsSessionExpiry, ALongReadAcrossAnExpiredSessionGoesOn) {
  std::string error;
  auto sim = Simulator::start("-user u:p -host-https -folder-auth -session-idle 1s", false, &error);
  ASSERT_TRUE(sim) << error;
  const std::string dir = sim->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
  std::filesystem::create_directories(dir);
  vixtest::run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " +
                  vixtest::sh_quote(dir + "/long.vmdk") + " 8M");
  vixtest::run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 8M' " +
                  vixtest::sh_quote(dir + "/long.vmdk"));
  const auto want = vixtest::qemu_raw(dir + "/long.vmdk");
  auto watcher = sim->login("u", "p", &error);
  ASSERT_TRUE(watcher) << error;
  for (const std::string direct : {"0", "1"}) {
    SCOPED_TRACE("vixfs.https.direct=" + direct);
    std::string single = direct == "1" ? "single_use=1" : "";
    ASSERT_TRUE(sim->set_host_https_faults(single, &error)) << error;
    auto r = vix::Library::init(
        {}, "", "", [&](vix::Config& c) { c.set("vixfs.https.direct", direct, "test"); });
    ASSERT_TRUE(r.ok()) << r.error().message;
    {
      auto conn = vix::Connection::connect(sim->connect_spec(sim->get("VCSIM_VM_DC0_H0_VM0")), true,
                                           "", "https");
      ASSERT_TRUE(conn.ok()) << conn.error().message;
      auto disk = (*conn)->open("[LocalDS_0] DC0_H0_VM0/long.vmdk", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
      ASSERT_TRUE(disk.ok()) << disk.error().message;
      auto key = (*conn)->remote()->client().current_session_key();
      ASSERT_TRUE(key.ok()) << key.error().message;
      std::vector<uint8_t> got(want.size());
      const uint64_t half = want.size() / 1024;
      ASSERT_TRUE((*disk)->read(0, half, got.data()).ok());
      // Until the server dropped the session (its idle timer, 1 s).
      bool expired = false;
      for (int i = 0; i < 1000 && !expired; ++i) {
        auto keys = watcher->session_keys();
        ASSERT_TRUE(keys.ok()) << keys.error().message;
        expired = std::find(keys->begin(), keys->end(), *key) == keys->end();
        if (!expired) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      ASSERT_TRUE(expired) << "the session did not expire";
      auto rest = (*disk)->read(half, want.size() / 512 - half, got.data() + half * 512);
      ASSERT_TRUE(rest.ok()) << rest.error().message;
      EXPECT_TRUE(got == want);
    }
    vix::Library::exit();
  }
  const std::string log = sim->host_https_log();
  EXPECT_GT(count_lines(log, "vcenter GET "), 0) << log;
  EXPECT_GT(count_lines(log, "host GET "), 0) << log;
}

}  // namespace
