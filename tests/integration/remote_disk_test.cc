// Remote connections of the library against a real vcsim: real VMDKs made by qemu-img placed in
// the simulator's datastore folder, read through the `file` and `https` transports and compared
// with qemu-img's raw conversion.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "support/disk_read.h"
#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vsphere/client.h"
#include "vsphere/session.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

using vixtest::read_all;

constexpr const char* kDisk = "[LocalDS_0] DC0_H0_VM0/disk1.vmdk";

class RemoteDisk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    fixtures_ = new TempDir();
    ds_ = sim_->get("VCSIM_DS_LocalDS_0");
    vm_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    // A monolithicSparse base with a delta child on top (the VM's disk1), and a streamOptimized
    // disk next to it; distinct patterns so a wrong parent or offset shows.
    const std::string dir = ds_ + "/DC0_H0_VM0";
    std::filesystem::create_directories(dir);
    const std::string base = dir + "/base.vmdk", child = dir + "/disk1.vmdk";
    run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 16M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 3M' -c 'write -P 0x11 9M 1M' " + sh_quote(base));
    std::filesystem::remove(child);
    run_ok("qemu-img create -q -f vmdk -F vmdk -b base.vmdk " + sh_quote(child));
    run_ok("qemu-io -f vmdk -c 'write -P 0xc3 1M 2M' -c 'write -P 0x77 15M 65536' " +
           sh_quote(child));
    const std::string raw = fixtures_->file("stream.raw");
    run_ok("qemu-img create -q -f raw " + sh_quote(raw) + " 8M");
    run_ok("qemu-io -f raw -c 'write -P 0x42 512 5M' " + sh_quote(raw));
    run_ok("qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized " + sh_quote(raw) +
           " " + sh_quote(dir + "/stream.vmdk"));
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete fixtures_;
    fixtures_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(sim_, nullptr) << error_; }
  void TearDown() override { vix::Library::exit(); }

  // Initialises the library with these config lines.
  void init(const std::string& config = "") {
    std::string file;
    if (!config.empty()) {
      file = dir_.file("vixfs.conf");
      vixtest::write_file(file, config);
    }
    auto r = vix::Library::init({}, "", file);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  static vix::ConnectSpec spec(const std::string& password = "p") {
    return sim_->connect_spec(vm_, "u", password);
  }

  void expect_same_as_qemu(const std::string& modes, const std::string& path,
                           const std::string& local_file, const std::string& config = "") {
    init(config);
    auto conn = vix::Connection::connect(spec(), true, "", modes);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(),
              modes.substr(0, modes.find(':')) == "https" ? "https" : "file");
    auto got = read_all(**disk);
    auto want = vixtest::qemu_raw(local_file);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_TRUE(got == want) << path << " through " << modes << " differs from qemu-img";
    disk->reset();
  }

  static Simulator* sim_;
  static std::string error_;
  static TempDir* fixtures_;
  static std::string ds_, vm_;
  TempDir dir_;
};
Simulator* RemoteDisk::sim_ = nullptr;
std::string RemoteDisk::error_;
TempDir* RemoteDisk::fixtures_ = nullptr;
std::string RemoteDisk::ds_, RemoteDisk::vm_;

TEST_F(RemoteDisk, DeltaChainThroughFileEqualsQemu) {
  expect_same_as_qemu("file", kDisk, ds_ + "/DC0_H0_VM0/disk1.vmdk");
}

TEST_F(RemoteDisk, DeltaChainThroughHttpsEqualsQemu) {
  expect_same_as_qemu("https", kDisk, ds_ + "/DC0_H0_VM0/disk1.vmdk");
}

TEST_F(RemoteDisk, StreamOptimizedThroughHttpsEqualsQemu) {
  expect_same_as_qemu("https", "[LocalDS_0] DC0_H0_VM0/stream.vmdk",
                      ds_ + "/DC0_H0_VM0/stream.vmdk");
}

TEST_F(RemoteDisk, SmallRequestsAndOneConnectionStillEqualQemu) {
  expect_same_as_qemu("https", kDisk, ds_ + "/DC0_H0_VM0/disk1.vmdk",
                      "vixfs.https.connections = 1\n");
}

TEST_F(RemoteDisk, ChainFallsBackToHttpsWhenTheDatastoreIsNotLocal) {
  init("vixfs.datastore.LocalDS_0 = " + dir_.file("not-there") + "\n");
  auto conn = vix::Connection::connect(spec(), true, "", "file:https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "https");
  disk->reset();

  // With `file` alone, as in VDDK, the chain goes on over the network: nbdssl (no NBD server
  // here), then https; never plain nbd.
  auto only_file = vix::Connection::connect(spec(), true, "", "file");
  ASSERT_TRUE(only_file.ok()) << only_file.error().message;
  auto d2 = (*only_file)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(d2.ok()) << d2.error().message;
  EXPECT_EQ((*d2)->transport_name(), "https");
  d2->reset();

  // A network mode alone does not fall back.
  vix::Library::exit();
  init("vixfs.datastore.LocalDS_0 = " + dir_.file("not-there") +
       "\nvixfs.nbd.server = 127.0.0.1:1\n");
  auto only_nbd = vix::Connection::connect(spec(), true, "", "nbd");
  ASSERT_TRUE(only_nbd.ok()) << only_nbd.error().message;
  auto d3 = (*only_nbd)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(d3.ok());
  EXPECT_EQ(d3.error().message.find("https"), std::string::npos) << d3.error().message;
}

TEST_F(RemoteDisk, HttpsIsReadOnly) {
  init();
  auto conn = vix::Connection::connect(spec(), false, "", "https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(512, 1);
  auto w = (*disk)->write(0, 1, buf.data());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, VIX_E_FILE_READ_ONLY) << w.error().message;
  disk->reset();
}

TEST_F(RemoteDisk, MissingDiskIsFileNotFound) {
  init();
  auto conn = vix::Connection::connect(spec(), true, "", "https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open("[LocalDS_0] DC0_H0_VM0/nope.vmdk", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().code, VIX_E_FILE_NOT_FOUND) << disk.error().message;
}

TEST_F(RemoteDisk, WrongPasswordIsAuthenticationFailure) {
  init();
  auto conn = vix::Connection::connect(spec("wrong"), true, "", "");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.error().code, VIX_E_AUTHENTICATION_FAIL) << conn.error().message;
}

TEST_F(RemoteDisk, WrongThumbprintShowsThePresentedOne) {
  init();
  vix::ConnectSpec s = spec();
  s.thumbprint = std::string(59, '0');
  for (size_t i = 2; i < s.thumbprint.size(); i += 3) s.thumbprint[i] = ':';
  auto conn = vix::Connection::connect(s, true, "", "");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.error().code, VIX_E_CANNOT_CONNECT_TO_HOST) << conn.error().message;
  EXPECT_NE(conn.error().message.find(sim_->get("VCSIM_SHA1")), std::string::npos)
      << conn.error().message;
}

TEST_F(RemoteDisk, UnknownVmAndSnapshotAreObjectNotFound) {
  init();
  vix::ConnectSpec s = spec();
  s.vmx_spec = "moref=vm-4242";
  auto conn = vix::Connection::connect(s, true, "", "");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.error().code, VIX_E_OBJECT_NOT_FOUND);
  EXPECT_NE(conn.error().message.find("vm-4242"), std::string::npos) << conn.error().message;

  auto snap = vix::Connection::connect(spec(), true, "snapshot-4242", "");
  ASSERT_FALSE(snap.ok());
  EXPECT_EQ(snap.error().code, VIX_E_OBJECT_NOT_FOUND);
  EXPECT_NE(snap.error().message.find("snapshot-4242"), std::string::npos) << snap.error().message;
}

TEST_F(RemoteDisk, SnapshotConnectionAndDisconnectLogsOut) {
  init();
  // A second client watches the server's session list.
  vix::vsphere::ConnectOptions o;
  o.url = sim_->get("VCSIM_URL");
  o.thumbprint = sim_->get("VCSIM_SHA256");
  auto watcher = vix::vsphere::Client::connect(o);
  ASSERT_TRUE(watcher.ok()) << watcher.error().message;
  ASSERT_TRUE((*watcher)->login("u", "p").ok());
  auto snap = (*watcher)->create_snapshot(vm_, "remote-test", "", false, false);
  ASSERT_TRUE(snap.ok()) << snap.error().message;

  auto conn = vix::Connection::connect(spec(), true, *snap, "");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  EXPECT_EQ((*conn)->snapshot(), *snap);
  ASSERT_NE((*conn)->remote(), nullptr);
  const std::string key = (*conn)->remote()->cookie();
  auto before = (*watcher)->session_keys();
  ASSERT_TRUE(before.ok()) << before.error().message;
  EXPECT_NE(std::find(before->begin(), before->end(), key), before->end());

  conn->reset();  // Disconnect
  auto after = (*watcher)->session_keys();
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(std::find(after->begin(), after->end(), key), after->end())
      << "the connection's session is still on the server";
  EXPECT_TRUE((*watcher)->remove_snapshot(*snap, false).ok());
  EXPECT_TRUE((*watcher)->logout().ok());
}

TEST_F(RemoteDisk, DefaultModesPickFileForALocalDatastore) {
  expect_same_as_qemu("", kDisk, ds_ + "/DC0_H0_VM0/disk1.vmdk");
}

TEST_F(RemoteDisk, BorrowedSessionCookieWorksAndIsNotLoggedOut) {
  init();
  vix::vsphere::ConnectOptions o;
  o.url = sim_->get("VCSIM_URL");
  o.thumbprint = sim_->get("VCSIM_SHA256");
  auto owner = vix::vsphere::Client::connect(o);
  ASSERT_TRUE(owner.ok()) << owner.error().message;
  ASSERT_TRUE((*owner)->login("u", "p").ok());

  vix::ConnectSpec s = spec();
  s.cred_type = VIXDISKLIB_CRED_SESSIONID;
  s.password.clear();
  s.cookie = (*owner)->session_cookie();
  auto conn = vix::Connection::connect(s, true, "", "https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> sector(512);
  EXPECT_TRUE((*disk)->read(2048, 1, sector.data()).ok());
  EXPECT_EQ(sector[0], 0xc3);  // the child's pattern at 1 MiB
  disk->reset();
  conn->reset();
  // The owner's session is still alive.
  auto keys = (*owner)->current_session_key();
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  EXPECT_EQ(*keys, (*owner)->session_cookie());
  EXPECT_TRUE((*owner)->logout().ok());
}

TEST_F(RemoteDisk, DefaultModesFollowVddksOrder) {
  auto modes = vix::parse_transport_modes("");
  ASSERT_TRUE(modes.ok());
  EXPECT_EQ(*modes, (std::vector<std::string>{"file", "san", "hotadd", "nbdssl", "nbd", "https"}));
}

}  // namespace
