// nbd and nbdssl for remote connections: vcsim gives the inventory, qemu-nbd serves the VM's disk
// (a qemu-img VMDK placed in the simulator's datastore) under its datastore path. The chain
// nbdssl:nbd:https, TLS with a pinned thumbprint (certificates made here with openssl), the
// "export smaller than the disk" check, and a vixfs mount reading through nbd.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdarg>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "transports/nbd_transport_servers.h"
#include "vix/connection.h"
#include "vix/library.h"

using vixtest::free_port;
using vixtest::PortServer;
using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

constexpr const char* kDisk = "[LocalDS_0] DC0_H0_VM0/disk1.vmdk";

using nbdtest::captured;

class NbdTransportRemote : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    fixtures_ = new TempDir();
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
    std::filesystem::create_directories(dir);
    disk_ = dir + "/disk1.vmdk";
    std::filesystem::remove(disk_);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk_) + " 20M");
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0x5a 0 3M' -c 'write -P 0x11 9M 1M' -c 'write -P 0x77 "
        "19M 4096' " +
        sh_quote(disk_));
    // A CA and a server certificate signed by it, for qemu-nbd's TLS (its dir wants ca-cert.pem,
    // server-cert.pem, server-key.pem; a self-signed CA certificate is refused as a server's).
    const std::string certs = fixtures_->file("certs");
    std::filesystem::create_directories(certs);
    vixtest::write_file(certs + "/ext.cnf",
                        std::string("basicConstraints=CA:FALSE\n"
                                    "keyUsage=digitalSignature,keyEncipherment\n"
                                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"));
    run_ok("cd " + sh_quote(certs) +
           " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem "
           "-subj /CN=vixfs-test-ca -days 2 2>/dev/null"
           " && openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr "
           "-subj /CN=127.0.0.1 2>/dev/null"
           " && openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem "
           "-CAcreateserial -out server-cert.pem -days 2 -extfile ext.cnf 2>/dev/null");
    std::string fp = run_ok("openssl x509 -noout -fingerprint -sha256 -in " +
                            sh_quote(certs + "/server-cert.pem"));
    sha256_ = fp.substr(fp.find('=') + 1);
    while (!sha256_.empty() && (sha256_.back() == '\n' || sha256_.back() == '\r')) {
      sha256_.pop_back();
    }
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete fixtures_;
    fixtures_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(sim_, nullptr) << error_; }
  void TearDown() override { vix::Library::exit(); }

  void init(const std::string& config) {
    auto r = nbdtest::init_library_capturing_log(dir_.file("vixfs.conf"), config);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  std::unique_ptr<PortServer> qemu_nbd(const std::string& image, bool tls) {
    const int port = free_port();
    std::string tls_args;
    if (tls) {
      tls_args = "--object tls-creds-x509,id=t0,endpoint=server,dir=" +
                 sh_quote(fixtures_->file("certs")) + ",verify-peer=off --tls-creds t0 ";
    }
    return std::make_unique<PortServer>(
        "qemu-nbd -f vmdk -x " + sh_quote(kDisk) + " -b 127.0.0.1 -p " + std::to_string(port) +
            " -t --read-only --shared=8 " + tls_args + sh_quote(image),
        port, dir_.file("server.log"));
  }

  static vix::ConnectSpec spec() { return sim_->connect_spec(sim_->get("VCSIM_VM_DC0_H0_VM0")); }

  // Opens kDisk through `modes`; checks the winner and the bytes against qemu-img.
  void expect_opens(const std::string& modes, const std::string& winner) {
    auto conn = vix::Connection::connect(spec(), true, "", modes);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(), winner);
    auto want = vixtest::qemu_raw(disk_);
    std::vector<uint8_t> got(want.size());
    ASSERT_EQ((*disk)->info().capacity_sectors * 512, want.size());
    auto r = (*disk)->read(0, got.size() / 512, got.data());
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(got == want) << "through " << winner << " differs from qemu-img";
  }

  static Simulator* sim_;
  static std::string error_, disk_, sha256_;
  static TempDir* fixtures_;
  TempDir dir_;
};
Simulator* NbdTransportRemote::sim_ = nullptr;
std::string NbdTransportRemote::error_, NbdTransportRemote::disk_, NbdTransportRemote::sha256_;
TempDir* NbdTransportRemote::fixtures_ = nullptr;

TEST_F(NbdTransportRemote, ChainSkipsNbdsslOnAPlainServerAndOpensNbd) {
  auto srv = qemu_nbd(disk_, false);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  expect_opens("nbdssl:nbd:https", "nbd");
  const std::string log = captured();
  EXPECT_NE(log.find("transport nbdssl skipped"), std::string::npos) << log;
}

TEST_F(NbdTransportRemote, NbdsslWithAPinnedThumbprintOpens) {
  auto srv = qemu_nbd(disk_, true);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.thumbprint = " + sha256_ + "\n");
  expect_opens("nbdssl:nbd:https", "nbdssl");
}

TEST_F(NbdTransportRemote, NbdsslWithAWrongThumbprintIsRefused) {
  auto srv = qemu_nbd(disk_, true);
  ASSERT_TRUE(srv->ready()) << srv->log();
  std::string wrong = sha256_;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.thumbprint = " + wrong + "\n");
  auto conn = vix::Connection::connect(spec(), true, "", "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_NE(disk.error().message.find(sha256_.substr(0, 20)), std::string::npos)
      << "the presented thumbprint should show: " << disk.error().message;
}

TEST_F(NbdTransportRemote, NbdsslTrustsACaFileWhenNoThumbprintApplies) {
  auto srv = qemu_nbd(disk_, true);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
       "\nvixfs.nbd.caFile = " + fixtures_->file("certs/ca-cert.pem") + "\n");
  // A local connection: no host or connection thumbprint, so the CA bundle decides.
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, true, "", "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "nbdssl");
  auto want = vixtest::qemu_raw(disk_);
  std::vector<uint8_t> got(want.size());
  ASSERT_TRUE((*disk)->read(0, got.size() / 512, got.data()).ok());
  EXPECT_TRUE(got == want);
}

TEST_F(NbdTransportRemote, NbdsslWithNothingToTrustIsAnError) {
  auto srv = qemu_nbd(disk_, true);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, true, "", "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().code, VIX_E_INVALID_ARG) << disk.error().message;
  EXPECT_NE(disk.error().message.find("nbdssl"), std::string::npos) << disk.error().message;
}

TEST_F(NbdTransportRemote, ExportSmallerThanTheDiskIsRefused) {
  // vcsim's inventory says disk1 holds 20 MiB (read from the VMDK); this export has 512 KiB.
  const std::string small = dir_.file("small.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(small) + " 512K");
  auto srv = qemu_nbd(small, false);
  ASSERT_TRUE(srv->ready()) << srv->log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  auto conn = vix::Connection::connect(spec(), true, "", "nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().code, VIX_E_DISK_CAPACITY_MISMATCH) << disk.error().message;
  EXPECT_NE(disk.error().message.find("524288"), std::string::npos) << disk.error().message;
  EXPECT_NE(disk.error().message.find("20971520"), std::string::npos) << disk.error().message;
}

TEST_F(NbdTransportRemote, WithoutAServerNfcIsAskedForATicket) {
  // Without vixfs.nbd.server both modes speak VMware's NFC (nfc_test.cc): this simulator runs
  // without -nfc, so the ticket call fails and the reason names it, for each mode.
  init("");
  auto conn = vix::Connection::connect(spec(), true, "", "nbdssl:nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_NE(disk.error().message.find("NfcGetVmFiles"), std::string::npos) << disk.error().message;
  EXPECT_NE(disk.error().message.find("nbdssl"), std::string::npos) << disk.error().message;
}

TEST_F(NbdTransportRemote, MountReadsThroughNbd) {
  auto srv = qemu_nbd(disk_, false);
  ASSERT_TRUE(srv->ready()) << srv->log();
  vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  vixtest::write_file(dir_.file("vixfs.conf"),
                      "vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  const std::string mnt = dir_.file("mnt");
  vixtest::VixfsDaemon m({"--server", sim_->get("VCSIM_URL"), "--user", "u", "--password-file",
                          dir_.file("pw"), "--thumbprint", sim_->get("VCSIM_SHA1"), "--name", "sim",
                          "--transports", "nbd", "--config", dir_.file("vixfs.conf")},
                         mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
  const std::string img = mnt + "/sim/" + vm + "/current/scsi0-0.img";
  const std::string raw = dir_.file("want.raw"), copy = dir_.file("copy.raw");
  run_ok("qemu-img convert -q -f vmdk -O raw " + sh_quote(disk_) + " " + sh_quote(raw));
  auto cp = run("cp --sparse=always " + sh_quote(img) + " " + sh_quote(copy));
  EXPECT_EQ(cp.exit_code, 0) << cp.output << m.log();
  auto r = run("cmp " + sh_quote(raw) + " " + sh_quote(copy));
  EXPECT_EQ(r.exit_code, 0) << r.output << m.log();
  const std::string json = vixtest::read_text(mnt + "/sim/" + vm + "/current/snapshot.json");
  EXPECT_NE(json.find("\"transport\": \"nbd (nbd)\""), std::string::npos) << json;
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

TEST_F(NbdTransportRemote, MountServerGoneGivesEioAndTheDaemonLives) {
  auto srv = qemu_nbd(disk_, false);
  ASSERT_TRUE(srv->ready()) << srv->log();
  vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  vixtest::write_file(dir_.file("vixfs.conf"),
                      "vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) +
                          "\nvixDiskLib.nfc.RequestTimeoutMs = 1500\n");
  const std::string mnt = dir_.file("mnt");
  vixtest::VixfsDaemon m({"--server", sim_->get("VCSIM_URL"), "--user", "u", "--password-file",
                          dir_.file("pw"), "--thumbprint", sim_->get("VCSIM_SHA1"), "--name", "sim",
                          "--transports", "nbd", "--config", dir_.file("vixfs.conf")},
                         mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
  const std::string img = mnt + "/sim/" + vm + "/current/scsi0-0.img";
  run_ok("dd if=" + sh_quote(img) + " of=/dev/null bs=64k count=4 2>/dev/null");
  srv->stop();
  const auto t0 = std::chrono::steady_clock::now();
  // Past what the first read cached: a fresh region of the disk.
  auto r = run("dd if=" + sh_quote(img) + " of=/dev/null bs=1M skip=10 count=4 iflag=direct");
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Input/output error"), std::string::npos) << r.output;
  EXPECT_LT(ms, 10000);
  EXPECT_TRUE(m.mounted()) << m.log();
  const std::string json = vixtest::read_text(mnt + "/sim/" + vm + "/current/snapshot.json");
  EXPECT_NE(json.find("\"transport\": \"nbd (nbd)\""), std::string::npos) << json;
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

TEST_F(NbdTransportRemote, PerServerKeyWinsAndNbdkitTlsWorks) {
  // nbdkit --tls=require with the same certificates; the per-server key names the server. It
  // serves the disk's raw bytes: qemu-img's view of the VMDK.
  const std::string raw = dir_.file("disk.raw");
  run_ok("qemu-img convert -q -O raw " + sh_quote(disk_) + " " + sh_quote(raw));
  const int port = free_port();
  PortServer srv("nbdkit -f -i 127.0.0.1 -p " + std::to_string(port) +
                     " --tls=require --tls-certificates=" + sh_quote(fixtures_->file("certs")) +
                     " --filter=exportname file " + sh_quote(raw) +
                     " exportname-strict=false default-export=x",
                 port, dir_.file("server.log"));
  ASSERT_TRUE(srv.ready()) << srv.log();
  init("vixfs.nbd.server = 127.0.0.1:1\nvixfs.server." + sim_->get("VCSIM_HOST") +
       ".nbd.server = 127.0.0.1:" + std::to_string(port) + "\nvixfs.nbd.thumbprint = " + sha256_ +
       "\n");
  auto conn = vix::Connection::connect(spec(), true, "", "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "nbdssl");
  const auto want = vixtest::read_file(raw);
  std::vector<uint8_t> head(64 * 1024);
  ASSERT_TRUE((*disk)->read(0, head.size() / 512, head.data()).ok());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), want.begin()));
}

TEST_F(NbdTransportRemote, NbdsslWithAPreSharedKey) {
  const std::string psk = dir_.file("keys.psk");
  vixtest::write_file(psk, std::string("vixfs:0123456789abcdef0123456789abcdef\n"));
  const int port = free_port();
  PortServer srv("nbdkit -f -i 127.0.0.1 -p " + std::to_string(port) +
                     " --tls=require --tls-psk=" + sh_quote(psk) + " file " + sh_quote(disk_),
                 port, dir_.file("server.log"));
  ASSERT_TRUE(srv.ready()) << srv.log();
  init("vixfs.nbd.server = 127.0.0.1:" + std::to_string(port) + "\nvixfs.nbd.pskFile = " + psk +
       "\n");
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, true, "", "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("x", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  const auto want = vixtest::read_file(disk_);
  std::vector<uint8_t> head(4096);
  ASSERT_TRUE((*disk)->read(0, 8, head.data()).ok());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), want.begin()));
}

TEST_F(NbdTransportRemote, MountCopyCompletesAcrossAServerRestart) {
  auto srv = qemu_nbd(disk_, false);
  ASSERT_TRUE(srv->ready()) << srv->log();
  vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  vixtest::write_file(dir_.file("vixfs.conf"),
                      "vixfs.nbd.server = 127.0.0.1:" + std::to_string(srv->port()) + "\n");
  const std::string mnt = dir_.file("mnt");
  vixtest::VixfsDaemon m({"--server", sim_->get("VCSIM_URL"), "--user", "u", "--password-file",
                          dir_.file("pw"), "--thumbprint", sim_->get("VCSIM_SHA1"), "--name", "sim",
                          "--transports", "nbd", "--config", dir_.file("vixfs.conf")},
                         mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string img = mnt + "/sim/" + sim_->get("VCSIM_VM_DC0_H0_VM0") + "/current/scsi0-0.img";
  const std::string raw = dir_.file("want.raw"), copy = dir_.file("copy.raw");
  run_ok("qemu-img convert -q -f vmdk -O raw " + sh_quote(disk_) + " " + sh_quote(raw));
  // The reader copies the first 64 KiB, then waits until the server is down and copies the
  // rest (from the far end first, past any read-ahead) while it comes back.
  const std::string ready = dir_.file("ready"), down = dir_.file("down");
  std::thread killer([&] {
    for (int i = 0; i < 1000 && !std::filesystem::exists(ready); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    srv->stop();
    vixtest::write_file(down, std::string("1"));
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    srv->start();
  });
  auto cp =
      run("python3 -c 'import os,sys,time\n"
          "src=os.open(sys.argv[1], os.O_RDONLY); size=os.fstat(src).st_size\n"
          "out=os.open(sys.argv[2], os.O_WRONLY|os.O_CREAT|os.O_TRUNC)\n"
          "os.pwrite(out, os.pread(src, 65536, 0), 0); open(sys.argv[3], \"w\").close()\n"
          "while not os.path.exists(sys.argv[4]): time.sleep(0.01)\n"
          "for off in sorted(range(65536, size, 65536), reverse=True):\n"
          "  data=os.pread(src, 65536, off); assert len(data)==min(65536, size-off)\n"
          "  os.pwrite(out, data, off)\n' " +
          sh_quote(img) + " " + sh_quote(copy) + " " + sh_quote(ready) + " " + sh_quote(down));
  killer.join();
  EXPECT_EQ(cp.exit_code, 0) << cp.output << m.log();
  auto r = run("cmp " + sh_quote(raw) + " " + sh_quote(copy));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(m.log().find("reconnected"), std::string::npos) << m.log();
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

}  // namespace
