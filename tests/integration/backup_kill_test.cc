// `vixdisk backup` killed (SIGKILL: no handler runs) at each point of its life, then `vixdisk
// cleanup`: no snapshot, no disabled method, no hot-added disk and no backup.json stays behind,
// and the next backup of the VM succeeds (issue 19). The points are made deterministic by the
// simulator's delay switch (tests/vcsim/soap_delay.go: CONTROL/delay-<method> holds the call
// before the simulator handles it, CONTROL/delayed logs "begin/end <method>"), or by the NFC
// server's delay for the copy, or by a hot-added disk whose device never appears; each test
// checks that its point was really reached before it kills.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/fixtures.h"
#include "support/process.h"
#include "support/server_leftovers.h"
#include "support/vsphere_sim.h"
#include "transports/hotadd_journal.h"
#include "vix/leftovers.h"
#include "vsphere/client.h"
#include "vsphere/method_access.h"

using vixtest::Child;
using vixtest::ChildOptions;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool poll(const std::function<bool()>& ready, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// What the tests share: one simulator per suite, vixdisk runs against it, and the counts the
// issue asks for.
class KillBase : public ::testing::Test {
 protected:
  static constexpr int kDelayMs = 4000;  // long enough for the test to see the call and kill

  void SetUp() override {
    ASSERT_NE(sim(), nullptr) << sim_error();
    control_ = sim()->get("VCSIM_CONTROL");
    ASSERT_FALSE(control_.empty());
    fs::remove(control_ + "/delayed");
    std::string err;
    client_ = sim()->login("u", "p", &err);
    ASSERT_NE(client_, nullptr) << err;
    // A TEST_P's name holds a '/': one folder per test all the same.
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dest_ = dir().file(name);
  }
  void TearDown() override {
    if (!delayed_method_.empty()) fs::remove(control_ + "/delay-" + delayed_method_);
  }

  virtual Simulator* sim() = 0;
  virtual const std::string& sim_error() = 0;
  virtual TempDir& dir() = 0;

  std::vector<std::string> argv(const std::string& command, const std::vector<std::string>& more,
                                const std::string& transports) {
    std::vector<std::string> a = {VIXFS_VIXDISK,     command,
                                  "--server",        sim()->get("VCSIM_HOST"),
                                  "--port",          sim()->get("VCSIM_PORT"),
                                  "--user",          "u",
                                  "--password-file", password_file(),
                                  "--thumbprint",    sim()->get("VCSIM_SHA256")};
    if (!transports.empty()) a.insert(a.end(), {"--transports", transports});
    if (!config_.empty()) a.insert(a.end(), {"--config", config_});
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  std::string password_file() {
    const std::string pw = dir().file("pw");
    if (!fs::exists(pw)) std::ofstream(pw) << "p\n";
    return pw;
  }
  std::unique_ptr<Child> start(const std::string& command, const std::vector<std::string>& more,
                               const std::string& transports, const std::string& log_name) {
    ChildOptions o;
    o.argv = argv(command, more, transports);
    o.log = dest_ + "." + log_name + ".log";
    o.truncate_log = true;
    return std::make_unique<Child>(o);
  }
  int run(const std::string& command, const std::vector<std::string>& more,
          const std::string& transports, std::string* log) {
    auto c = start(command, more, transports, command);
    EXPECT_TRUE(c->wait_exit(std::chrono::minutes(5))) << c->log();
    *log = c->log();
    return WIFEXITED(c->status()) ? WEXITSTATUS(c->status()) : -1;
  }

  // The switch of soap_delay.go; removed again by TearDown.
  void delay(const std::string& method, int ms) {
    delayed_method_ = method;
    std::ofstream(control_ + "/delay-" + method) << ms << "\n";
  }
  void clear_delay() {
    if (!delayed_method_.empty()) fs::remove(control_ + "/delay-" + delayed_method_);
  }
  bool delayed(const std::string& what) {
    const std::string log = read_text(control_ + "/delayed");
    return log.find(what + "\n") != std::string::npos;
  }

  size_t tool_snapshots() { return vixtest::tool_snapshots(*client_).size(); }
  bool relocate_disabled(const std::string& vm) {
    const auto m = vixtest::disabled_methods(*client_, vm);
    EXPECT_LE(m.size(), 1u) << ::testing::PrintToString(m);
    return m.size() == 1 && m[0] == "RelocateVM_Task";
  }
  // Disks of `folder` (the backed-up VM's) attached to the proxy VM.
  size_t hot_added(const std::string& proxy, const std::string& folder) {
    auto devices = client_->devices_of(proxy);
    EXPECT_TRUE(devices.ok()) << devices.error().message;
    size_t n = 0;
    if (!devices.ok()) return n;
    for (const auto& d : *devices)
      if (d.file_name.find("] " + folder + "/") != std::string::npos) ++n;
    return n;
  }
  bool has_file_with_extension(const std::string& ext) {
    if (!fs::exists(dest_)) return false;
    for (const auto& e : fs::directory_iterator(dest_))
      if (e.path().extension() == ext) return true;
    return false;
  }
  static std::string identity(pid_t pid) {
    vix::Maker m = vix::this_process("vixdisk backup");
    m.pid = pid;
    return vix::access_identity(m);
  }

  // SIGKILL, and proof that it was the kill that ended the backup.
  void kill(Child& b) {
    b.kill_now();
    ASSERT_TRUE(WIFSIGNALED(b.status())) << "the backup ended before the kill:\n" << b.log();
    EXPECT_EQ(WTERMSIG(b.status()), SIGKILL);
  }

  // The dry run lists and changes nothing; cleanup undoes everything; the next backup of the VM
  // into the same folder works and leaves nothing either.
  void cleanup_then_backup_again(pid_t killed, size_t snapshots, bool disabled,
                                 const std::string& vm, const std::string& vm_name,
                                 const std::string& proxy) {
    clear_delay();
    const std::string id = identity(killed);
    std::string log;
    ASSERT_EQ(run("cleanup", {"--dry-run"}, "", &log), 0) << log;
    if (snapshots) {
      EXPECT_NE(log.find("would remove snapshot"), std::string::npos) << log;
      EXPECT_NE(log.find("would enable RelocateVM_Task for '" + id + "' again"), std::string::npos)
          << log;
    }
    EXPECT_EQ(tool_snapshots(), snapshots) << "--dry-run changes nothing";
    EXPECT_EQ(relocate_disabled(vm), disabled) << "--dry-run changes nothing";

    ASSERT_EQ(run("cleanup", {}, "", &log), 0) << log;
    if (snapshots) {
      EXPECT_NE(log.find("removed snapshot"), std::string::npos) << log;
      EXPECT_NE(log.find("enabled RelocateVM_Task for '" + id + "' again"), std::string::npos)
          << log;
    }
    EXPECT_EQ(tool_snapshots(), 0u) << log;
    EXPECT_FALSE(relocate_disabled(vm)) << log;
    if (!proxy.empty()) {
      EXPECT_EQ(hot_added(proxy, vm_name), 0u) << log;
    }
    EXPECT_FALSE(fs::exists(dest_ + "/backup.json"));

    ASSERT_EQ(run("backup", {vm_name, dest_}, "file", &log), 0) << log;
    EXPECT_TRUE(fs::exists(dest_ + "/backup.json")) << log;
    EXPECT_FALSE(has_file_with_extension(".part")) << log;
    EXPECT_EQ(tool_snapshots(), 0u);
    EXPECT_FALSE(relocate_disabled(vm));
  }

  std::string control_, dest_, config_, delayed_method_;
  std::unique_ptr<vix::vsphere::Client> client_;
};

// ---- The points of a backup of a sample VM -------------------------------------------------

struct KillPoint {
  std::string name;
  std::string delay;       // wire method held in flight ("" = the copy, slowed by the NFC server)
  std::string transports;  // of the killed backup
  // Seen before the kill: tool snapshots, RelocateVM_Task disabled, the first image complete.
  size_t snapshots_at_kill;
  bool disabled_at_kill;
  bool image_at_kill;
  // Once the call in flight has been carried out by the server, before cleanup.
  size_t snapshots_after;
  bool disabled_after;
};

std::ostream& operator<<(std::ostream& o, const KillPoint& p) {
  return o << p.name;
}

// The sample VMs' simulator (with the NFC server, for a copy slow enough to be killed).
class SampleVmKill : public KillBase {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sim_ = Simulator::start_with_samples(dir_->file("samples"), 64, "-user u:p -nfc", &error_)
               .release();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    KillBase::SetUp();
    if (HasFatalFailure()) return;
    std::string err;
    ASSERT_TRUE(sim_->set_nfc_faults("", &err)) << err;
  }
  void TearDown() override {
    KillBase::TearDown();
    std::string err;
    if (sim_) {
      EXPECT_TRUE(sim_->set_nfc_faults("", &err)) << err;
    }
  }
  Simulator* sim() override { return sim_; }
  const std::string& sim_error() override { return error_; }
  TempDir& dir() override { return *dir_; }

  static TempDir* dir_;
  static Simulator* sim_;
  static std::string error_;
};
TempDir* SampleVmKill::dir_ = nullptr;
Simulator* SampleVmKill::sim_ = nullptr;
std::string SampleVmKill::error_;

class BackupKilled : public SampleVmKill, public ::testing::WithParamInterface<KillPoint> {};

TEST_P(BackupKilled, CleanupLeavesNothingBehind) {
  const KillPoint& p = GetParam();
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0"), proxy = sim_->get("VCSIM_VM_DC0_H0_VM1");
  ASSERT_EQ(tool_snapshots(), 0u);
  ASSERT_FALSE(relocate_disabled(vm));
  std::string err;
  if (p.delay.empty()) {
    ASSERT_TRUE(sim_->set_nfc_faults("delay_ms=400\n", &err)) << err;
  } else {
    delay(p.delay, kDelayMs);
  }
  auto b = start("backup", {"DC0_H0_VM0", dest_}, p.transports, "backup");

  // The point, reached for real.
  const std::string seen = p.delay.empty() ? "a .part file in DEST" : "begin " + p.delay;
  ASSERT_TRUE(b->wait_until(
      [&] { return p.delay.empty() ? has_file_with_extension(".part") : delayed(seen); },
      std::chrono::seconds(60)))
      << "never saw " << seen << ":\n"
      << b->log();
  EXPECT_EQ(tool_snapshots(), p.snapshots_at_kill);
  EXPECT_EQ(relocate_disabled(vm), p.disabled_at_kill);
  EXPECT_EQ(fs::exists(dest_ + "/scsi0-0.img"), p.image_at_kill);
  EXPECT_FALSE(fs::exists(dest_ + "/backup.json"));
  kill(*b);
  if (HasFatalFailure()) return;

  // The server carries out the call it had received.
  if (!p.delay.empty()) {
    ASSERT_TRUE(poll([&] { return delayed("end " + p.delay); }, std::chrono::seconds(60)))
        << read_text(control_ + "/delayed");
  }
  EXPECT_EQ(tool_snapshots(), p.snapshots_after);
  EXPECT_EQ(relocate_disabled(vm), p.disabled_after);
  EXPECT_FALSE(fs::exists(dest_ + "/backup.json"));

  cleanup_then_backup_again(b->pid(), p.snapshots_after, p.disabled_after, vm, "DC0_H0_VM0", proxy);
}

INSTANTIATE_TEST_SUITE_P(
    Points, BackupKilled,
    ::testing::Values(
        // CreateSnapshot_Task received, not answered: the snapshot appears after the kill.
        KillPoint{"CreateSnapshotInFlight", "CreateSnapshot_Task", "file", 0, false, false, 1,
                  false},
        // The snapshot exists; PrepareForAccess's DisableMethods received, carried out later.
        KillPoint{"DisableMethodsInFlight", "DisableMethods", "file", 1, false, false, 1, true},
        // Mid-copy: the snapshot and the disabled method both there.
        KillPoint{"DuringCopy", "", "nbdssl", 1, true, false, 1, true},
        // Copy done; EndAccess's EnableMethods received: only the snapshot stays.
        KillPoint{"EnableMethodsInFlight", "EnableMethods", "file", 1, true, true, 1, false},
        // After EndAccess, RemoveSnapshot_Task received: nothing stays.
        KillPoint{"RemoveSnapshotInFlight", "RemoveSnapshot_Task", "file", 1, false, true, 0,
                  false}),
    [](const ::testing::TestParamInfo<KillPoint>& i) { return i.param.name; });

// A dead backup's snapshot that cleanup cannot remove (someone removed it while cleanup's
// RemoveSnapshot_Task was on its way): the method that backup disabled is enabled all the same.
TEST_F(SampleVmKill, CleanupEnablesTheMethodEvenWhenTheRemovalFails) {
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
  const pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) _exit(0);
  ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
  vix::Maker maker = vix::this_process("vixdisk backup");
  maker.pid = dead;
  std::string err;
  const std::string snap = sim_->snapshot("u", "p", vm, "vixdisk-backup",
                                          vix::snapshot_description(maker, "then"), &err);
  ASSERT_FALSE(snap.empty()) << err;
  auto d = vix::vsphere::disable_methods(*client_, vm, {vix::vsphere::kRelocateMethod},
                                         vix::access_identity(maker));
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_TRUE(relocate_disabled(vm));

  delay("RemoveSnapshot_Task", kDelayMs);
  auto c = start("cleanup", {}, "", "cleanup");
  ASSERT_TRUE(
      c->wait_until([&] { return delayed("begin RemoveSnapshot_Task"); }, std::chrono::seconds(60)))
      << c->log();
  clear_delay();
  ASSERT_TRUE(client_->remove_snapshot(snap, false).ok());
  ASSERT_TRUE(c->wait_exit(std::chrono::seconds(60))) << c->log();
  EXPECT_EQ(c->status(), 0) << c->log();
  EXPECT_NE(c->log().find("could not remove snapshot " + snap), std::string::npos) << c->log();
  EXPECT_NE(
      c->log().find("; enabled RelocateVM_Task for '" + vix::access_identity(maker) + "' again"),
      std::string::npos)
      << c->log();
  EXPECT_FALSE(relocate_disabled(vm));
  EXPECT_EQ(tool_snapshots(), 0u);
}

// ---- Killed with a disk hot-added to the proxy VM --------------------------------------------

// The simulator's VM0 given a disk the hotadd transport can attach (a backing uuid: the
// simulator's disks have none), VM1 as the proxy. No guest kernel plays the proxy's udev here, so
// the attached disk's device never appears and the backup waits for it with the disk attached
// and journalled: the kill lands there.
class BackupKilledWithHotadd : public KillBase {
 protected:
  static constexpr const char* kDisk = "[LocalDS_0] DC0_H0_VM0/disk1.vmdk";

  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    const std::string folder = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
    const std::string image = folder + "/disk1.vmdk";
    fs::remove(image);
    fs::remove(folder + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(image) + " 4M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 1M' " + sh_quote(image));
    auto c = sim_->login("u", "p", &error_);
    if (!c) return;
    const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
    auto inv = c->inventory();
    if (!inv.ok()) {
      error_ = inv.error().message;
      return;
    }
    const auto* v = inv->find_vm(vm);
    if (v == nullptr || v->disks.empty()) {
      error_ = "no disk on " + vm;
      return;
    }
    const auto& d = v->disks[0];
    const std::string spec =
        "<spec><deviceChange><operation>edit</operation><device xsi:type=\"VirtualDisk\"><key>" +
        std::to_string(d.key) + "</key><deviceInfo><label>" + d.label +
        "</label><summary>4,096 KB</summary></deviceInfo><backing "
        "xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>" +
        kDisk +
        "</fileName><diskMode>persistent</diskMode><uuid>6000C29a-0000-0000-0000-0000000000b7</"
        "uuid></backing><controllerKey>" +
        std::to_string(d.controller_key) + "</controllerKey><unitNumber>" + std::to_string(d.unit) +
        "</unitNumber><capacityInKB>4096</capacityInKB><capacityInBytes>4194304</"
        "capacityInBytes></device></deviceChange></spec>";
    auto r = c->call("ReconfigVM_Task", {"VirtualMachine", vm}, spec);
    if (!r.ok()) {
      error_ = r.error().message;
      return;
    }
    auto done = c->wait_for_task(r->body.child("returnval").text().as_string());
    if (!done.ok()) error_ = done.error().message;
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(error_.empty()) << error_;
    KillBase::SetUp();
    if (HasFatalFailure()) return;
    tmp_ = dir_->file("tmp");
    fs::create_directories(tmp_);
    fs::create_directories(dir_->file("by-id"));
    config_ = dir_->file("vixfs.conf");
    std::ofstream(config_) << "tmpDirectory = \"" << tmp_ << "\"\nvixfs.hotadd.proxyVm = \""
                           << sim_->get("VCSIM_VM_DC0_H0_VM1") << "\"\nvixfs.hotadd.devRoot = \""
                           << dir_->file("by-id") << "\"\nvixfs.hotadd.attachTimeoutMs = 300000\n";
  }
  Simulator* sim() override { return sim_; }
  const std::string& sim_error() override { return error_; }
  TempDir& dir() override { return *dir_; }

  size_t journal_entries() {
    auto e = vix::hotadd::Journal(tmp_).entries();
    EXPECT_TRUE(e.ok()) << e.error().message;
    return e.ok() ? e->size() : 0;
  }

  static TempDir* dir_;
  static Simulator* sim_;
  static std::string error_;
  std::string tmp_;
};
TempDir* BackupKilledWithHotadd::dir_ = nullptr;
Simulator* BackupKilledWithHotadd::sim_ = nullptr;
std::string BackupKilledWithHotadd::error_;

TEST_F(BackupKilledWithHotadd, WhileTheDiskIsAttachedToTheProxy) {
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0"), proxy = sim_->get("VCSIM_VM_DC0_H0_VM1");
  ASSERT_EQ(hot_added(proxy, "DC0_H0_VM0"), 0u);
  auto b = start("backup", {"DC0_H0_VM0", dest_}, "hotadd", "backup");
  ASSERT_TRUE(
      b->wait_until([&] { return hot_added(proxy, "DC0_H0_VM0") == 1; }, std::chrono::seconds(60)))
      << "the disk never reached the proxy:\n"
      << b->log();
  EXPECT_EQ(journal_entries(), 1u);
  EXPECT_EQ(tool_snapshots(), 1u);
  EXPECT_TRUE(relocate_disabled(vm));
  kill(*b);
  if (HasFatalFailure()) return;
  EXPECT_EQ(hot_added(proxy, "DC0_H0_VM0"), 1u) << "nothing for cleanup to do?";
  cleanup_then_backup_again(b->pid(), 1, true, vm, "DC0_H0_VM0", proxy);
  EXPECT_EQ(journal_entries(), 0u);
}

}  // namespace
