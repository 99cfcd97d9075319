// `vixdisk backup` and `vixdisk cleanup` against the simulator's sample VMs: the copies equal
// qemu-img's view of the disks, and whatever way a backup ends (done, SIGTERM, a failed copy,
// SIGKILL followed by cleanup) no snapshot of it and no disabled method stays behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "support/fixtures.h"
#include "support/process.h"
#include "support/server_leftovers.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
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

class Backup : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sim_ = Simulator::start_with_samples(dir_->file("samples"), 64, "-user u:p -nfc", &error_)
               .release();
    std::ofstream(dir_->file("pw")) << "p\n";
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    std::string err;
    ASSERT_TRUE(sim_->set_nfc_faults("", &err)) << err;
    client_ = sim_->login("u", "p", &err);
    ASSERT_NE(client_, nullptr) << err;
    dest_ = dir_->file(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  std::vector<std::string> argv(const std::string& command, const std::vector<std::string>& more,
                                const std::string& transports) {
    std::vector<std::string> a = {VIXFS_VIXDISK,     command,
                                  "--server",        sim_->get("VCSIM_HOST"),
                                  "--port",          sim_->get("VCSIM_PORT"),
                                  "--user",          "u",
                                  "--password-file", dir_->file("pw"),
                                  "--thumbprint",    sim_->get("VCSIM_SHA256")};
    if (!transports.empty()) a.insert(a.end(), {"--transports", transports});
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  std::unique_ptr<Child> start(const std::string& command, const std::vector<std::string>& more,
                               const std::string& transports = "") {
    ChildOptions o;
    o.argv = argv(command, more, transports);
    o.log = dest_ + "." + command + ".log";
    o.truncate_log = true;
    return std::make_unique<Child>(o);
  }
  // Runs to the end; the exit status.
  int run(const std::string& command, const std::vector<std::string>& more,
          const std::string& transports, std::string* log) {
    auto c = start(command, more, transports);
    EXPECT_TRUE(c->wait_exit(std::chrono::minutes(5))) << c->log();
    *log = c->log();
    return WIFEXITED(c->status()) ? WEXITSTATUS(c->status()) : -1;
  }

  // Snapshots whose description says a process of the tools made them.
  size_t tool_snapshots() { return vixtest::tool_snapshots(*client_).size(); }
  std::vector<std::string> disabled(const std::string& vm) {
    return vixtest::disabled_methods(*client_, vm);
  }
  std::string datastore_file(const std::string& vm_folder, const std::string& file) {
    return sim_->get("VCSIM_DS_LocalDS_0") + "/" + vm_folder + "/" + file;
  }
  std::string vm0() { return sim_->get("VCSIM_VM_DC0_H0_VM0"); }
  bool part_file_exists() {
    if (!fs::exists(dest_)) return false;
    for (const auto& e : fs::directory_iterator(dest_)) {
      if (e.path().extension() == ".part") return true;
    }
    return false;
  }

  static TempDir* dir_;
  static Simulator* sim_;
  static std::string error_;
  std::unique_ptr<vix::vsphere::Client> client_;
  std::string dest_;
};
TempDir* Backup::dir_ = nullptr;
Simulator* Backup::sim_ = nullptr;
std::string Backup::error_;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_F(Backup, CopiesEveryDiskLikeQemuWithItsSha256AndRemovesItsSnapshot) {
  struct Case {
    std::string vm, folder, live, transports;
  } cases[] = {
      {"DC0_H0_VM0", "DC0_H0_VM0", "disk1-000001.vmdk", "file"},
      // By name, and the SEsparse chain of the VMFS6 sample over https.
      {"DC0_C0_RP0_VMFS6", "DC0_C0_RP0_VMFS6", "disk1-000003.vmdk", "https"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.vm);
    const std::string dest = dest_ + "-" + c.vm;
    std::string log;
    ASSERT_EQ(run("backup", {c.vm, dest}, c.transports, &log), 0) << log;
    EXPECT_NE(log.find("backup " + c.vm + " ("), std::string::npos) << log;
    EXPECT_NE(log.find("removed"), std::string::npos) << log;
    const std::string image = dest + "/scsi0-0.img";
    const auto want = vixtest::qemu_raw(datastore_file(c.folder, c.live));
    EXPECT_TRUE(vixtest::read_file(image) == want) << image;
    struct stat st {};
    ASSERT_EQ(stat(image.c_str(), &st), 0);
    EXPECT_LT(uint64_t(st.st_blocks) * 512, want.size()) << "holes stay holes";
    // sha256sum agrees with the recorded sum, and backup.json names it.
    run_ok("cd " + sh_quote(dest) + " && sha256sum --quiet -c scsi0-0.img.sha256");
    const std::string sum = read_text(image + ".sha256").substr(0, 64);
    const std::string meta = read_text(dest + "/backup.json");
    EXPECT_NE(meta.find("\"sha256\": \"" + sum + "\""), std::string::npos) << meta;
    EXPECT_NE(meta.find("\"name\": \"" + c.vm + "\""), std::string::npos) << meta;
    EXPECT_EQ(tool_snapshots(), 0u);
  }
  EXPECT_EQ(disabled(vm0()), std::vector<std::string>{});
}

TEST_F(Backup, SigtermMidCopyRemovesTheSnapshotAndLeavesNoImage) {
  std::string err;
  ASSERT_TRUE(sim_->set_nfc_faults("delay_ms=400\n", &err)) << err;
  auto b = start("backup", {"DC0_H0_VM0", dest_}, "nbdssl");
  ASSERT_TRUE(b->wait_until([&] { return part_file_exists(); }, std::chrono::seconds(60)))
      << b->log();
  EXPECT_EQ(tool_snapshots(), 1u);
  EXPECT_EQ(disabled(vm0()), std::vector<std::string>{"RelocateVM_Task"});
  ASSERT_TRUE(b->signal(SIGTERM));
  ASSERT_TRUE(b->wait_exit(std::chrono::seconds(60))) << b->log();
  ASSERT_TRUE(WIFEXITED(b->status())) << b->log();
  EXPECT_EQ(WEXITSTATUS(b->status()), 4) << b->log();
  EXPECT_NE(b->log().find("interrupted"), std::string::npos) << b->log();
  EXPECT_EQ(tool_snapshots(), 0u);
  EXPECT_EQ(disabled(vm0()), std::vector<std::string>{});
  EXPECT_FALSE(part_file_exists());
  EXPECT_FALSE(fs::exists(dest_ + "/scsi0-0.img"));
  EXPECT_FALSE(fs::exists(dest_ + "/backup.json"));
}

TEST_F(Backup, FailedCopyRemovesTheSnapshot) {
  std::string err;
  ASSERT_TRUE(
      sim_->set_nfc_faults("fail_io=1000\nerror_text=the test's disk is unreadable\n", &err))
      << err;
  std::string log;
  EXPECT_EQ(run("backup", {"DC0_H0_VM0", dest_}, "nbdssl", &log), 2) << log;
  EXPECT_NE(log.find("the test's disk is unreadable"), std::string::npos) << log;
  EXPECT_NE(log.find("failed; snapshot"), std::string::npos) << log;
  EXPECT_EQ(tool_snapshots(), 0u);
  EXPECT_EQ(disabled(vm0()), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(dest_ + "/backup.json"));
}

TEST_F(Backup, KilledBackupIsListedThenRemovedByCleanup) {
  std::string err;
  ASSERT_TRUE(sim_->set_nfc_faults("delay_ms=400\n", &err)) << err;
  auto b = start("backup", {"DC0_H0_VM0", dest_}, "nbdssl");
  ASSERT_TRUE(b->wait_until([&] { return part_file_exists(); }, std::chrono::seconds(60)))
      << b->log();
  b->kill_now();
  ASSERT_EQ(tool_snapshots(), 1u);
  EXPECT_EQ(disabled(vm0()), std::vector<std::string>{"RelocateVM_Task"});

  std::string log;
  ASSERT_EQ(run("cleanup", {"--dry-run"}, "", &log), 0) << log;
  EXPECT_NE(log.find("would remove snapshot"), std::string::npos) << log;
  EXPECT_NE(log.find("left by vixdisk backup pid " + std::to_string(b->pid())), std::string::npos)
      << log;
  EXPECT_EQ(tool_snapshots(), 1u) << "--dry-run changes nothing";

  ASSERT_EQ(run("cleanup", {}, "", &log), 0) << log;
  EXPECT_NE(log.find("removed snapshot"), std::string::npos) << log;
  EXPECT_EQ(tool_snapshots(), 0u);
  EXPECT_EQ(disabled(vm0()), std::vector<std::string>{});
  // Nothing left: a second cleanup finds nothing.
  ASSERT_EQ(run("cleanup", {"--json"}, "", &log), 0) << log;
  EXPECT_NE(log.find("\"snapshots\": []"), std::string::npos) << log;
}

TEST_F(Backup, SnapshotsOfLiveProcessesAndOfOthersAreLeftAlone) {
  // One made by someone else, one marked as made by this (live) test process.
  std::string err;
  const std::string theirs =
      sim_->snapshot("u", "p", vm0(), "nightly-by-someone", "Made by another product", &err);
  ASSERT_FALSE(theirs.empty()) << err;
  const std::string ours = sim_->snapshot(
      "u", "p", vm0(), "live", vix::snapshot_description(vix::this_process("vixfs"), "now"), &err);
  ASSERT_FALSE(ours.empty()) << err;
  std::string log;
  ASSERT_EQ(run("cleanup", {"--json"}, "", &log), 0) << log;
  EXPECT_NE(log.find("\"snapshots\": []"), std::string::npos) << log;
  EXPECT_TRUE(client_->remove_snapshot(theirs, false).ok());
  EXPECT_TRUE(client_->remove_snapshot(ours, false).ok());
}

// A snapshot removal that cannot merge the deltas (the simulator's switch) is reported by
// backup and cleanup, and `vixdisk consolidate` clears it.
TEST_F(Backup, ConsolidationNeededIsReportedAndConsolidateClearsIt) {
  const std::string flag = sim_->get("VCSIM_CONTROL") + "/consolidation-fails";
  ASSERT_FALSE(sim_->get("VCSIM_CONTROL").empty());
  std::ofstream(flag) << "1\n";
  std::string log;
  const int rc = run("backup", {"DC0_H0_VM0", dest_}, "file", &log);
  fs::remove(flag);
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("DC0_H0_VM0 (" + vm0() + ") needs consolidation"), std::string::npos) << log;
  EXPECT_NE(log.find("the VM needs consolidation"), std::string::npos) << log;

  ASSERT_EQ(run("cleanup", {"--json"}, "", &log), 0) << log;
  EXPECT_NE(log.find("\"consolidationNeeded\": [{\"vm\": \"" + vm0() + "\""), std::string::npos)
      << log;
  ASSERT_EQ(run("consolidate", {"DC0_H0_VM0"}, "", &log), 0) << log;
  EXPECT_NE(log.find("no longer needs consolidation"), std::string::npos) << log;
  ASSERT_EQ(run("cleanup", {"--json"}, "", &log), 0) << log;
  EXPECT_NE(log.find("\"consolidationNeeded\": []"), std::string::npos) << log;
}

// A snapshot a killed vixfs of this host made goes when the next vixfs mounts that server.
TEST_F(Backup, MountingRemovesTheSnapshotsOfDeadProcesses) {
  const pid_t dead = fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) _exit(0);
  ASSERT_EQ(waitpid(dead, nullptr, 0), dead);
  vix::Maker maker = vix::this_process("vixfs");
  maker.pid = dead;
  std::string err;
  const std::string snap = sim_->snapshot("u", "p", vm0(), "left-by-a-killed-vixfs",
                                          vix::snapshot_description(maker, "then"), &err);
  ASSERT_FALSE(snap.empty()) << err;
  ASSERT_EQ(tool_snapshots(), 1u);
  fs::create_directories(dest_ + "-mnt");
  vixtest::VixfsDaemon vixfs({"--server", sim_->get("VCSIM_URL"), "--user", "u", "--password-file",
                              dir_->file("pw"), "--thumbprint", sim_->get("VCSIM_SHA1")},
                             dest_ + "-mnt", dest_ + "-vixfs.log");
  ASSERT_TRUE(vixfs.mounted()) << vixfs.log();
  EXPECT_EQ(tool_snapshots(), 0u);
  EXPECT_NE(vixfs.log().find("cleanup: removed snapshot " + snap), std::string::npos)
      << vixfs.log();
  EXPECT_TRUE(vixfs.stop()) << vixfs.log();
}

TEST(BackupDescription, ReadsBackWhatItWrites) {
  vix::Maker m{"vixdisk backup", "proxy-7.example.com", 4242};
  auto back = vix::parse_snapshot_description(vix::snapshot_description(m, "2026-12-07T10:00:00Z"));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->tool, m.tool);
  EXPECT_EQ(back->host, m.host);
  EXPECT_EQ(back->pid, m.pid);
  EXPECT_FALSE(vix::parse_snapshot_description("Made by Veeam on host, pid 12, at now"));
  EXPECT_FALSE(vix::parse_snapshot_description("Made by vixfs on host, pid x, at now"));
  EXPECT_FALSE(vix::parse_snapshot_description("nightly"));
}

}  // namespace
