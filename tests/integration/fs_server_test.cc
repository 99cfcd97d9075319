// vixfs --server against a real vcsim and a real mount: the tree follows the inventory (a snapshot
// made through the API shows up with its disk), snapshot.json and by-name links, disk bytes equal
// qemu-img's through the file and https transports, a wrong password fails before mounting, and
// unmount logs every session out.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vixtest::read_text;
using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
using vixtest::vixfs_mounted;
using vixtest::VixfsDaemon;

namespace {

class FsServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    fixtures_ = new TempDir();
    // DC0_H0_VM0's disk1 becomes a real monolithicSparse disk with data.
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
    std::filesystem::create_directories(dir);
    disk_ = dir + "/disk1.vmdk";
    std::filesystem::remove(disk_);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk_) + " 24M");
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0x5a 0 3M' -c 'write -P 0x11 9M 1M' -c 'write -P 0x77 "
        "23M 4096' " +
        sh_quote(disk_));
    // A snapshot made through the API on the other VM (inventory is read at mount).
    snapshot_ = sim_->snapshot("u", "p", sim_->get("VCSIM_VM_DC0_H0_VM1"), "nightly/1",
                               "before \"it\"", &error_);
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete fixtures_;
    fixtures_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_FALSE(snapshot_.empty()) << error_;
    vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  }

  static std::unique_ptr<vix::vsphere::Client> client() { return sim_->login("u", "p", &error_); }

  std::vector<std::string> args(const std::string& transports = "") {
    std::vector<std::string> a = {
        "--server",     sim_->get("VCSIM_URL"),  "--user", "u",  "--password-file", dir_.file("pw"),
        "--thumbprint", sim_->get("VCSIM_SHA1"), "--name", "sim"};
    if (!transports.empty()) a.insert(a.end(), {"--transports", transports});
    return a;
  }

  std::set<std::string> list(const std::string& dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      out.insert(e.path().filename().string());
    }
    EXPECT_FALSE(ec) << dir << ": " << ec.message();
    return out;
  }

  void expect_disk_equals_qemu(const std::string& transports) {
    const std::string mnt = dir_.file("mnt");
    VixfsDaemon m(args(transports), mnt, dir_.file("log"));
    ASSERT_TRUE(m.mounted()) << m.log();
    const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
    const std::string img = mnt + "/sim/" + vm + "/current/scsi0-0.img";
    struct stat st {};
    ASSERT_EQ(stat(img.c_str(), &st), 0) << m.log();
    EXPECT_EQ(st.st_size, 24 << 20);
    const std::string raw = dir_.file("want.raw");
    run_ok("qemu-img convert -q -f vmdk -O raw " + sh_quote(disk_) + " " + sh_quote(raw));
    auto r = run("cmp " + sh_quote(raw) + " " + sh_quote(img));
    EXPECT_EQ(r.exit_code, 0) << r.output << m.log();
    const std::string json = read_text(mnt + "/sim/" + vm + "/current/snapshot.json");
    EXPECT_NE(json.find("\"transport\": \"" + transports + "\""), std::string::npos) << json;
    // The inventory lists 1 MiB; once open, the disk's own 24 MiB wins in snapshot.json too.
    EXPECT_NE(json.find("\"capacityBytes\": " + std::to_string(24 << 20) + ","), std::string::npos)
        << json;
    EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
    const std::string log = m.log();
    EXPECT_NE(log.find("closed every disk"), std::string::npos) << log;
    // Disconnect, then Cleanup, then logout, then the library's exit.
    const size_t disconnected = log.find("/current: disconnected");
    // The mount's own Cleanup wrote the same line earlier: the unmount's is the last one.
    const size_t cleaned = log.rfind("sim: Cleanup: cleaned 0, remaining 0");
    const size_t logged_out = log.find("sim: logged out");
    EXPECT_NE(disconnected, std::string::npos) << log;
    EXPECT_NE(cleaned, std::string::npos) << log;
    EXPECT_NE(logged_out, std::string::npos) << log;
    EXPECT_LT(disconnected, cleaned) << log;
    EXPECT_LT(cleaned, logged_out) << log;
    EXPECT_NE(log.find("library exit"), std::string::npos) << log;
  }

  static Simulator* sim_;
  static std::string error_, disk_, snapshot_;
  static TempDir* fixtures_;
  TempDir dir_;
};
Simulator* FsServer::sim_ = nullptr;
std::string FsServer::error_, FsServer::disk_, FsServer::snapshot_;
TempDir* FsServer::fixtures_ = nullptr;

TEST_F(FsServer, TreeFollowsTheInventory) {
  auto c = client();
  ASSERT_NE(c, nullptr) << error_;
  auto inv = c->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  (void)c->logout();

  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(args(), mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  std::set<std::string> want = {"by-name"};
  for (const auto& vm : inv->vms) want.insert(vm.moref);
  EXPECT_EQ(list(mnt + "/sim"), want);
  EXPECT_EQ(list(mnt), (std::set<std::string>{".vixfs", "sim"}));

  const auto* vm = inv->find_vm(sim_->get("VCSIM_VM_DC0_H0_VM1"));
  ASSERT_NE(vm, nullptr);
  const auto* snap = vix::vsphere::find_snapshot(vm->snapshots, snapshot_);
  ASSERT_NE(snap, nullptr);
  ASSERT_FALSE(snap->disks.empty());
  EXPECT_EQ(list(mnt + "/sim/" + vm->moref), (std::set<std::string>{"current", snapshot_}));
  const std::string snap_dir = mnt + "/sim/" + vm->moref + "/" + snapshot_;
  std::set<std::string> files = {"snapshot.json"};
  for (const auto& d : snap->disks) files.insert(d.slot_name() + ".img");
  EXPECT_EQ(list(snap_dir), files);
  EXPECT_TRUE(files.count("scsi0-0.img"));
  // The size the inventory gives (vcsim's snapshot disks are not real VMDKs, so the open on
  // lookup fails and the listed capacity stays), the mtime the snapshot's createTime.
  struct stat st {};
  ASSERT_EQ(stat((snap_dir + "/snapshot.json").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  ASSERT_EQ(stat((snap_dir + "/scsi0-0.img").c_str(), &st), 0) << m.log();
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), snap->disks[0].capacity_bytes);
  EXPECT_EQ(st.st_mtim.tv_sec, snap->create_time_ns / 1000000000);
  EXPECT_GT(st.st_mtim.tv_sec, 0);
}

TEST_F(FsServer, SnapshotJsonDescribesTheSnapshot) {
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(args(), mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM1");
  const std::string json = read_text(mnt + "/sim/" + vm + "/" + snapshot_ + "/snapshot.json");
  for (const std::string& want :
       {"\"moref\": \"" + snapshot_ + "\"", std::string("\"name\": \"nightly/1\""),
        std::string("\"description\": \"before \\\"it\\\"\""), std::string("\"createTime\": \""),
        std::string("\"quiesced\": false"),
        "\"vm\": {\"moref\": \"" + vm +
            "\", \"name\": \"DC0_H0_VM1\", \"consolidationNeeded\": null, \"changeTracking\": "
            "false, \"privileges\": "
            "{\"checked\":true,\"missing\":[]}}",
        std::string("\"file\": \"scsi0-0.img\""), std::string("\"datastorePath\": \"[LocalDS_0] "),
        std::string("\"capacityBytes\": "), std::string("\"transport\": null")}) {
    EXPECT_NE(json.find(want), std::string::npos) << want << " not in " << json;
  }
  const std::string current = read_text(mnt + "/sim/" + vm + "/current/snapshot.json");
  EXPECT_NE(current.find("\"moref\": null"), std::string::npos) << current;
  EXPECT_NE(current.find("\"vm\": {\"moref\": \"" + vm + "\""), std::string::npos) << current;
}

TEST_F(FsServer, ByNameLinksResolve) {
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(args(), mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM1");
  const std::string link = mnt + "/sim/by-name/DC0_H0_VM1/nightly%2F1";
  std::error_code ec;
  EXPECT_EQ(std::filesystem::read_symlink(link, ec).string(), "../../" + vm + "/" + snapshot_)
      << ec.message();
  EXPECT_TRUE(std::filesystem::exists(link + "/snapshot.json", ec)) << m.log();
  EXPECT_EQ(std::filesystem::canonical(link, ec).string(), mnt + "/sim/" + vm + "/" + snapshot_);
  EXPECT_EQ(list(mnt + "/sim/by-name"), (std::set<std::string>{"DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1",
                                                               "DC0_H0_VM0", "DC0_H0_VM1"}));
}

TEST_F(FsServer, DiskThroughFileEqualsQemu) {
  expect_disk_equals_qemu("file");
}

TEST_F(FsServer, DiskThroughHttpsEqualsQemu) {
  expect_disk_equals_qemu("https");
}

TEST_F(FsServer, UnmountLeavesNoSession) {
  auto c = client();
  ASSERT_NE(c, nullptr) << error_;
  auto before = c->session_keys();
  ASSERT_TRUE(before.ok()) << before.error().message;
  {
    const std::string mnt = dir_.file("mnt");
    VixfsDaemon m(args("https"), mnt, dir_.file("log"));
    ASSERT_TRUE(m.mounted()) << m.log();
    const std::string img =
        mnt + "/sim/" + sim_->get("VCSIM_VM_DC0_H0_VM0") + "/current/scsi0-0.img";
    run_ok("head -c 4096 " + sh_quote(img) + " > /dev/null");
    auto during = c->session_keys();
    ASSERT_TRUE(during.ok()) << during.error().message;
    EXPECT_EQ(during->size(), before->size() + 1);  // one login for the mount and its disks
    EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
  }
  auto after = c->session_keys();
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->size(), before->size());
  (void)c->logout();
}

TEST_F(FsServer, InventoryIsReadAgainAfterItsTtl) {
  vixtest::write_file(dir_.file("vixfs.conf"), std::string("vixfs.inventory.ttlSeconds = 1\n"));
  auto a = args();
  a.insert(a.end(), {"--config", dir_.file("vixfs.conf")});
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(a, mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = sim_->get("VCSIM_VM_DC0_C0_RP0_VM0");
  EXPECT_EQ(list(mnt + "/sim/" + vm), std::set<std::string>{"current"});

  auto c = client();
  ASSERT_NE(c, nullptr) << error_;
  auto snap = c->create_snapshot(vm, "later", "", false, false);
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(list(mnt + "/sim/" + vm), (std::set<std::string>{"current", *snap})) << m.log();
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::exists(mnt + "/sim/by-name/DC0_C0_RP0_VM0/later/snapshot.json", ec))
      << m.log();

  ASSERT_TRUE(c->remove_snapshot(*snap, false).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(list(mnt + "/sim/" + vm), std::set<std::string>{"current"}) << m.log();
  EXPECT_TRUE(list(mnt + "/sim/by-name/DC0_C0_RP0_VM0").empty());
  (void)c->logout();
}

TEST_F(FsServer, WrongPasswordFailsBeforeMounting) {
  vixtest::write_file(dir_.file("bad"), std::string("nope\n"));
  const std::string mnt = dir_.file("mnt");
  mkdir(mnt.c_str(), 0755);
  // Not -f: the parent must report the child's failure on the caller's terminal.
  auto r = run(std::string(VIXFS_BINARY) + " --server " + sim_->get("VCSIM_URL") +
               " --user u --password-file " + sh_quote(dir_.file("bad")) + " --thumbprint " +
               sim_->get("VCSIM_SHA1") + " --log-file " + sh_quote(dir_.file("log")) + " " +
               sh_quote(mnt));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find("InvalidLogin"), std::string::npos) << r.output;
  EXPECT_FALSE(vixfs_mounted(mnt));
}

TEST_F(FsServer, WrongThumbprintAndUnreachableServerFail) {
  const std::string mnt = dir_.file("mnt");
  mkdir(mnt.c_str(), 0755);
  const std::string zeros = "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00";
  auto r = run(std::string(VIXFS_BINARY) + " -f --server " + sim_->get("VCSIM_URL") +
               " --user u --password-file " + sh_quote(dir_.file("pw")) + " --thumbprint " + zeros +
               " " + sh_quote(mnt));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(sim_->get("VCSIM_SHA1")), std::string::npos) << r.output;
  EXPECT_FALSE(vixfs_mounted(mnt));
  auto u = run("VIXFS_PASSWORD=p " + std::string(VIXFS_BINARY) +
               " --server https://127.0.0.1:1 --user u --log-file " + sh_quote(dir_.file("log2")) +
               " " + sh_quote(mnt));
  EXPECT_NE(u.exit_code, 0);
  EXPECT_EQ(std::count(u.output.begin(), u.output.end(), '\n'), 1) << u.output;
  EXPECT_FALSE(vixfs_mounted(mnt));
}

}  // namespace

namespace {

// Without --server, every vixfs.server.ALIAS section of the config is mounted under its alias,
// and a section's own datastore map applies to its connections only.
TEST_F(FsServer, ServersFromTheConfigEachWithItsOwnKeys) {
  const std::string other = dir_.file("other-ds");
  std::filesystem::create_directories(other + "/DC0_H0_VM0");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(other + "/DC0_H0_VM0/disk1.vmdk") + " 24M");
  run_ok("qemu-io -f vmdk -c 'write -P 0xee 0 1M' " + sh_quote(other + "/DC0_H0_VM0/disk1.vmdk"));
  const std::string conf = "vixfs.server.a.url = \"" + sim_->get("VCSIM_URL") + "\"\n" +
                           "vixfs.server.a.user = \"u\"\n"
                           "vixfs.server.a.passwordFile = \"pw\"\n"
                           "vixfs.server.a.thumbprint = \"" +
                           sim_->get("VCSIM_SHA1") + "\"\n" + "vixfs.server.b.url = \"" +
                           sim_->get("VCSIM_URL") + "\"\n" +
                           "vixfs.server.b.user = \"u\"\n"
                           "vixfs.server.b.passwordFile = \"pw\"\n"
                           "vixfs.server.b.thumbprint = \"" +
                           sim_->get("VCSIM_SHA256") + "\"\n" +
                           "vixfs.server.b.transports = \"file\"\n"
                           "vixfs.server.b.datastore.LocalDS_0 = \"" +
                           other + "\"\n";
  vixtest::write_file(dir_.file("vixfs.conf"), conf);
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m({"--config", dir_.file("vixfs.conf")}, mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  EXPECT_EQ(list(mnt), (std::set<std::string>{".vixfs", "a", "b"})) << m.log();
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
  const std::string a = read_text(mnt + "/a/" + vm + "/current/scsi0-0.img");
  const std::string b = read_text(mnt + "/b/" + vm + "/current/scsi0-0.img");
  ASSERT_EQ(a.size(), size_t{24} << 20) << m.log();
  ASSERT_EQ(b.size(), size_t{24} << 20) << m.log();
  EXPECT_EQ(a[0], '\x5a');  // the simulator's datastore
  EXPECT_EQ(b[0], '\xee');  // b's own map of LocalDS_0
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
  const std::string log = m.log();
  EXPECT_NE(log.find("a: logged out"), std::string::npos) << log;
  EXPECT_NE(log.find("b: logged out"), std::string::npos) << log;
}

TEST_F(FsServer, NoServerAnywhereIsAOneLineError) {
  vixtest::write_file(dir_.file("empty.conf"), std::string("# nothing\n"));
  const std::string mnt = dir_.file("mnt");
  mkdir(mnt.c_str(), 0755);
  auto r = run(std::string(VIXFS_BINARY) + " -f --config " + sh_quote(dir_.file("empty.conf")) +
               " " + sh_quote(mnt));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("vixfs.server.ALIAS.url"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

}  // namespace

namespace {

// The VM's live disk moves to another file (as a snapshot does on a real host, which puts a new
// delta under the VM): after the TTL, current/ reads the new file; a descriptor opened before
// keeps reading the old one.
TEST_F(FsServer, CurrentFollowsTheVmsLiveDisks) {
  const std::string vm_name = "DC0_C0_RP0_VM1";
  const std::string vm = sim_->get("VCSIM_VM_" + vm_name);
  const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/" + vm_name;
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir + "/disk1-flat.vmdk");
  std::filesystem::remove(dir + "/disk1.vmdk");
  run_ok("qemu-img create -q -f vmdk " + sh_quote(dir + "/disk1.vmdk") + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x11 0 4M' " + sh_quote(dir + "/disk1.vmdk"));
  run_ok("qemu-img create -q -f vmdk " + sh_quote(dir + "/second.vmdk") + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x77 0 4M' " + sh_quote(dir + "/second.vmdk"));
  // The simulator checks an existing disk by its -flat name.
  vixtest::write_file(dir + "/second-flat.vmdk", std::string());

  vixtest::write_file(dir_.file("vixfs.conf"), std::string("vixfs.inventory.ttlSeconds = 1\n"));
  auto a = args("file");
  a.insert(a.end(), {"--config", dir_.file("vixfs.conf")});
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(a, mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string img = mnt + "/sim/" + vm + "/current/scsi0-0.img";
  const int held = open(img.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0) << strerror(errno) << m.log();
  char byte = 0;
  ASSERT_EQ(pread(held, &byte, 1, 0), 1) << m.log();
  EXPECT_EQ(byte, '\x11');

  auto c = client();
  ASSERT_NE(c, nullptr) << error_;
  auto inv = c->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  const auto* v = inv->find_vm(vm);
  ASSERT_NE(v, nullptr);
  ASSERT_FALSE(v->disks.empty());
  const auto& d = v->disks[0];
  const std::string spec =
      "<spec><deviceChange><operation>edit</operation><device xsi:type=\"VirtualDisk\"><key>" +
      std::to_string(d.key) + "</key><deviceInfo><label>" + d.label +
      "</label><summary>4,096 KB</summary></deviceInfo><backing "
      "xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[LocalDS_0] " +
      vm_name + "/second.vmdk</fileName><diskMode>persistent</diskMode></backing>" +
      "<controllerKey>" + std::to_string(d.controller_key) + "</controllerKey><unitNumber>" +
      std::to_string(d.unit) + "</unitNumber><capacityInKB>4096</capacityInKB></device>" +
      "</deviceChange></spec>";
  auto r = c->call("ReconfigVM_Task", {"VirtualMachine", vm}, spec);
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string task = r->body.child("returnval").text().as_string();
  ASSERT_FALSE(task.empty());
  auto done = c->wait_for_task(task);
  ASSERT_TRUE(done.ok()) << done.error().message;
  (void)c->logout();

  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  const std::string json = read_text(mnt + "/sim/" + vm + "/current/snapshot.json");
  EXPECT_NE(json.find(vm_name + "/second.vmdk"), std::string::npos) << json << m.log();
  const int fresh = open(img.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fresh, 0) << strerror(errno) << m.log();
  ASSERT_EQ(pread(fresh, &byte, 1, 4096), 1) << m.log();
  EXPECT_EQ(byte, '\x77');
  close(fresh);
  ASSERT_EQ(pread(held, &byte, 1, 8192), 1) << m.log();
  EXPECT_EQ(byte, '\x11');
  close(held);
  EXPECT_NE(m.log().find("current: the VM's disks changed"), std::string::npos) << m.log();
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

}  // namespace
