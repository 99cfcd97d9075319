// vixfs --server when the server goes away under a mount: a disk not yet opened fails with EIO
// in bounded time, listings are served from the inventory already read, unmount finishes; a
// snapshot removed through the API leaves the tree after the TTL without taking the daemon down.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
using vixtest::VixfsDaemon;

namespace {

using Clock = std::chrono::steady_clock;

std::set<std::string> names_in(const std::string& dir, std::error_code* ec) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir, *ec)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

// errno of open()+read() of the first 4 KiB, 0 on success.
int read_errno(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  const ssize_t n = pread(fd, buf, sizeof buf, 0);
  const int err = n < 0 ? errno : 0;
  close(fd);
  return err;
}

// Each test stops or changes its own simulator, so none is shared.
class FsServerFailure : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = Simulator::start("-user u:p", false, &error);
    ASSERT_NE(sim_, nullptr) << error;
    vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  }

  // Makes the VM's disk1 a real 8 MiB sparse disk whose first MiB is 0x3c.
  void real_disk(const std::string& vm_name) {
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/" + vm_name;
    std::filesystem::create_directories(dir);
    const std::string disk = dir + "/disk1.vmdk";
    std::filesystem::remove(disk);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk) + " 8M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x3c 0 1M' " + sh_quote(disk));
  }

  std::unique_ptr<vix::vsphere::Client> client() {
    vix::vsphere::ConnectOptions o;
    o.url = sim_->get("VCSIM_URL");
    o.thumbprint = sim_->get("VCSIM_SHA1");
    auto c = vix::vsphere::Client::connect(o);
    if (!c.ok() || !(*c)->login("u", "p").ok()) return nullptr;
    return std::move(c).value();
  }

  std::vector<std::string> args(const std::string& ttl_seconds) {
    vixtest::write_file(dir_.file("vixfs.conf"),
                        "vixfs.inventory.ttlSeconds = " + ttl_seconds + "\n");
    return {"--server",        sim_->get("VCSIM_URL"),
            "--user",          "u",
            "--password-file", dir_.file("pw"),
            "--thumbprint",    sim_->get("VCSIM_SHA1"),
            "--name",          "sim",
            "--config",        dir_.file("vixfs.conf"),
            "--transports",    "https"};
  }

  std::unique_ptr<Simulator> sim_;
  TempDir dir_;
};

TEST_F(FsServerFailure, StoppedServerGivesEioPromptlyAndUnmountStillWorks) {
  real_disk("DC0_H0_VM0");
  real_disk("DC0_H0_VM1");
  const std::string mnt = dir_.file("mnt");
  // A 1 s TTL so the listings below also go through a failing inventory refresh.
  VixfsDaemon d(args("1"), mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string vm0 = sim_->get("VCSIM_VM_DC0_H0_VM0");
  const std::string vm1 = sim_->get("VCSIM_VM_DC0_H0_VM1");
  const std::string opened = mnt + "/sim/" + vm0 + "/current/scsi0-0.img";
  const std::string unopened = mnt + "/sim/" + vm1 + "/current/scsi0-0.img";
  ASSERT_EQ(read_errno(opened), 0) << d.log();
  std::error_code ec;
  const std::set<std::string> before = names_in(mnt + "/sim", &ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(before.count(vm1));

  sim_->stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));

  auto start = Clock::now();
  EXPECT_EQ(read_errno(unopened), EIO) << d.log();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20)) << d.log();
  // The mount's session is shared, so nothing logs in again: the transport's open fails.
  EXPECT_NE(d.log().find("open [LocalDS_0] DC0_H0_VM1/disk1.vmdk failed"), std::string::npos)
      << d.log();

  start = Clock::now();
  EXPECT_EQ(names_in(mnt + "/sim", &ec), before) << ec.message() << d.log();
  EXPECT_EQ(names_in(mnt + "/sim/" + vm1, &ec), std::set<std::string>{"current"}) << d.log();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20)) << d.log();
  EXPECT_NE(d.log().find("inventory refresh failed, keeping the old tree"), std::string::npos)
      << d.log();

  start = Clock::now();
  EXPECT_TRUE(d.stop(std::chrono::seconds(30))) << d.log();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
  EXPECT_FALSE(vixtest::vixfs_mounted(mnt));
  EXPECT_NE(d.log().find("library exit"), std::string::npos) << d.log();
}

TEST_F(FsServerFailure, RemovedSnapshotLeavesTheTreeWithoutACrash) {
  auto c = client();
  ASSERT_NE(c, nullptr);
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM1");
  auto snap = c->create_snapshot(vm, "doomed", "", false, false);
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon d(args("1"), mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string snap_dir = mnt + "/sim/" + vm + "/" + *snap;
  std::error_code ec;
  ASSERT_EQ(names_in(mnt + "/sim/" + vm, &ec), (std::set<std::string>{"current", *snap}))
      << d.log();
  // A folder held open across the removal, as a shell sitting in it would.
  const int held = open(snap_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(held, 0) << strerror(errno);

  ASSERT_TRUE(c->remove_snapshot(*snap, false).ok());
  (void)c->logout();
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(names_in(mnt + "/sim/" + vm, &ec), std::set<std::string>{"current"}) << d.log();
  EXPECT_NE(d.log().find(*snap + ": snapshot gone"), std::string::npos) << d.log();

  const int by_path = read_errno(snap_dir + "/scsi0-0.img");
  EXPECT_TRUE(by_path == ENOENT || by_path == EIO) << strerror(by_path);
  const int fd = openat(held, "scsi0-0.img", O_RDONLY | O_CLOEXEC);
  int by_held = fd < 0 ? errno : 0;
  if (fd >= 0) {
    char buf[512];
    if (pread(fd, buf, sizeof buf, 0) < 0) by_held = errno;
    close(fd);
  }
  EXPECT_TRUE(by_held == ENOENT || by_held == EIO) << strerror(by_held) << d.log();
  if (by_held == EIO) {
    EXPECT_NE(d.log().find("scsi0-0.img"), std::string::npos) << d.log();
  }
  close(held);

  EXPECT_TRUE(d.mounted()) << d.log();
  EXPECT_TRUE(d.stop(std::chrono::seconds(30))) << d.log();
}

}  // namespace

namespace {

// Without a controlling terminal there is nobody to ask: one line saying how to give it.
TEST(FsServerPassword, NoTerminalAndNoPasswordFailsWithOneLine) {
  TempDir dir;
  const std::string mnt = dir.file("mnt");
  mkdir(mnt.c_str(), 0755);
  auto r = run("env -u VIXFS_PASSWORD setsid -w " + std::string(VIXFS_BINARY) +
               " -f --server https://127.0.0.1:1 --user u " + sh_quote(mnt) + " < /dev/null");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output,
            "vixfs: no password for https://127.0.0.1:1: use --password-file "
            "(vixfs.server.ALIAS.passwordFile) or VIXFS_PASSWORD\n");
  EXPECT_FALSE(vixtest::vixfs_mounted(mnt));
}

}  // namespace

namespace {

// On a terminal the password is asked for and not echoed: a wrong one typed there reaches the
// server (InvalidLogin) and never shows in the output.
TEST_F(FsServerFailure, PasswordIsAskedOnTheTerminal) {
  const std::string mnt = dir_.file("mnt");
  mkdir(mnt.c_str(), 0755);
  const std::string out = dir_.file("out");
  const std::string cmd = "env -u VIXFS_PASSWORD " + std::string(VIXFS_BINARY) + " -f --server " +
                          sim_->get("VCSIM_URL") + " --user u --thumbprint " +
                          sim_->get("VCSIM_SHA1") + " " + sh_quote(mnt);
  auto r =
      run("(for i in $(seq 200); do grep -q 'Password for' " + sh_quote(out) +
          " 2>/dev/null && break; sleep 0.05; done; printf 'wr0ngpw\\n'; sleep 3) | timeout 30 "
          "script -qec " +
          sh_quote(cmd) + " /dev/null > " + sh_quote(out));
  const std::string text = vixtest::read_text(out);
  EXPECT_NE(text.find("Password for u@"), std::string::npos) << text;
  EXPECT_NE(text.find("InvalidLogin"), std::string::npos) << text;
  EXPECT_EQ(text.find("wr0ngpw"), std::string::npos) << text;
  EXPECT_FALSE(vixtest::vixfs_mounted(mnt));
}

TEST_F(FsServerFailure, CtrlCAtThePasswordPromptRestoresEcho) {
  const std::string mnt = dir_.file("mnt");
  mkdir(mnt.c_str(), 0755);
  const std::string out = dir_.file("out");
  // The shell that runs vixfs then prints the terminal's modes: echo must be back on.
  const std::string cmd = "env -u VIXFS_PASSWORD " + std::string(VIXFS_BINARY) + " -f --server " +
                          sim_->get("VCSIM_URL") + " --user u --thumbprint " +
                          sim_->get("VCSIM_SHA1") + " " + sh_quote(mnt) +
                          "; echo \"exit=$?\"; stty -a";
  run("(for i in $(seq 200); do grep -q 'Password for' " + sh_quote(out) +
      " 2>/dev/null && break; sleep 0.05; done; printf '\\003'; sleep 3) | timeout 30 "
      "script -qec " +
      sh_quote(cmd) + " /dev/null > " + sh_quote(out));
  const std::string text = vixtest::read_text(out);
  EXPECT_NE(text.find("Password for u@"), std::string::npos) << text;
  EXPECT_NE(text.find("exit=130"), std::string::npos) << text;  // stopped by SIGINT
  EXPECT_NE(text.find(" echo "), std::string::npos) << text;
  EXPECT_EQ(text.find("-echo "), std::string::npos) << text;
  EXPECT_FALSE(vixtest::vixfs_mounted(mnt));
}

}  // namespace

namespace {

// A VM destroyed under the mount: its folder leaves the tree after the TTL, a disk already open
// keeps answering or fails with EIO, a new open is ENOENT or EIO, and the daemon stays up.
TEST_F(FsServerFailure, RemovedVmLeavesTheTreeWithoutACrash) {
  real_disk("DC0_H0_VM1");
  auto c = client();
  ASSERT_NE(c, nullptr);
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM1");
  const std::string mnt = dir_.file("mnt");
  auto a = args("1");
  a.back() = "file";  // --transports file
  VixfsDaemon d(a, mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string img = mnt + "/sim/" + vm + "/current/scsi0-0.img";
  const int fd = open(img.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno) << d.log();
  char first[512];
  ASSERT_EQ(pread(fd, first, sizeof first, 0), 512) << d.log();
  EXPECT_EQ(first[0], '\x3c');

  ASSERT_TRUE(c->power_off(vm).ok());
  auto destroyed = c->destroy_vm(vm);
  ASSERT_TRUE(destroyed.ok()) << destroyed.error().message;
  (void)c->logout();
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  std::error_code ec;
  EXPECT_FALSE(names_in(mnt + "/sim", &ec).count(vm)) << d.log();
  EXPECT_FALSE(std::filesystem::exists(mnt + "/sim/by-name/DC0_H0_VM1", ec)) << d.log();

  // Through the descriptor held across the removal: the same bytes, or EIO; never others.
  char again[512];
  const ssize_t n = pread(fd, again, sizeof again, 0);
  if (n == 512) {
    EXPECT_EQ(memcmp(first, again, 512), 0);
  } else {
    EXPECT_EQ(n, -1);
    EXPECT_EQ(errno, EIO) << strerror(errno);
  }
  close(fd);
  const int by_path = read_errno(img);
  EXPECT_TRUE(by_path == ENOENT || by_path == EIO) << strerror(by_path);
  EXPECT_TRUE(d.mounted()) << d.log();
  EXPECT_TRUE(d.stop(std::chrono::seconds(30))) << d.log();
}

}  // namespace

namespace {

// A server that accepts connections and never answers (here: the simulator stopped with
// SIGSTOP) costs a listing at most the refresh wait; the old view is served, the failed refresh
// is logged after vixfs.soap.timeoutMs, and unmount is bounded by that timeout too.
TEST_F(FsServerFailure, SilentServerNeverHoldsListingsLong) {
  const std::string mnt = dir_.file("mnt");
  auto a = args("1");
  vixtest::write_file(dir_.file("vixfs.conf"),
                      std::string("vixfs.inventory.ttlSeconds = 1\nvixfs.soap.timeoutMs = 3000\n"));
  VixfsDaemon d(a, mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  std::error_code ec;
  const std::set<std::string> before = names_in(mnt + "/sim", &ec);
  ASSERT_FALSE(ec) << ec.message();
  const pid_t sim = static_cast<pid_t>(std::stol(sim_->get("VCSIM_PID")));
  ASSERT_EQ(kill(sim, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));

  auto start = Clock::now();
  EXPECT_EQ(names_in(mnt + "/sim", &ec), before) << ec.message() << d.log();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5)) << d.log();
  start = Clock::now();
  EXPECT_EQ(names_in(mnt + "/sim", &ec), before) << ec.message() << d.log();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5)) << d.log();

  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  EXPECT_NE(d.log().find("inventory refresh failed, keeping the old tree"), std::string::npos)
      << d.log();
  (void)names_in(mnt + "/sim", &ec);  // starts another refresh into the silence
  start = Clock::now();
  EXPECT_TRUE(d.stop(std::chrono::seconds(30))) << d.log();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(15));
  kill(sim, SIGCONT);
}

}  // namespace
