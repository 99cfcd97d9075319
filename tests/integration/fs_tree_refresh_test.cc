// The mounted server tree between refreshes: st_blocks of a server disk comes from the inventory's
// layoutEx (no disk opened, no connection made), current/ shows a disk added to the VM while
// mounted, and the listing stays served while a read is stuck on a silent NFC server or the
// inventory refresh is stuck on a silent vCenter.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vixtest::read_text;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
using vixtest::VixfsDaemon;

namespace {

namespace fs = std::filesystem;

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  EXPECT_FALSE(ec) << dir << ": " << ec.message();
  return out;
}

// What the VM's disk1 takes on the datastore: its descriptor/sparse file and its -flat extent.
uint64_t stored_bytes(const std::string& vm_folder, const std::string& stem) {
  uint64_t sum = 0;
  std::error_code ec;
  for (const std::string& f : {stem + ".vmdk", stem + "-flat.vmdk"}) {
    const auto n = fs::file_size(vm_folder + "/" + f, ec);
    if (!ec) sum += n;
  }
  return sum;
}

// Each test starts its own simulator (some stop it or its NFC server).
class FsTreeRefresh : public ::testing::Test {
 protected:
  void start(const std::string& sim_args) {
    std::string error;
    sim_ = Simulator::start(sim_args, false, &error);
    ASSERT_NE(sim_, nullptr) << error;
    vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  }
  void TearDown() override {
    for (pid_t p : stopped_) kill(p, SIGCONT);
  }

  // The VM's disk1 becomes a real sparse disk of `mib` MiB (its first MiB 0x3c, the next 64 KiB
  // 0x5a), and the inventory says so, as vSphere would (ReconfigVM_Task editing the disk's
  // capacity). Returns the VM's folder on the datastore.
  std::string real_disk(const std::string& vm_name, int mib) {
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/" + vm_name;
    fs::create_directories(dir);
    const std::string disk = dir + "/disk1.vmdk";
    fs::remove(disk);
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk) + " " + std::to_string(mib) + "M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x3c 0 1M' -c 'write -P 0x5a 1M 64k' " + sh_quote(disk));
    // The simulator checks an existing disk by its -flat name.
    vixtest::write_file(dir + "/disk1-flat.vmdk", std::string());
    std::string error;
    auto c = sim_->login("u", "p", &error);
    EXPECT_NE(c, nullptr) << error;
    if (c == nullptr) return dir;
    const std::string vm = sim_->get("VCSIM_VM_" + vm_name);
    auto inv = c->inventory();
    EXPECT_TRUE(inv.ok() && inv->find_vm(vm) && !inv->find_vm(vm)->disks.empty());
    if (!inv.ok() || !inv->find_vm(vm) || inv->find_vm(vm)->disks.empty()) return dir;
    const auto& d = inv->find_vm(vm)->disks[0];
    const std::string spec =
        "<spec><deviceChange><operation>edit</operation><device xsi:type=\"VirtualDisk\"><key>" +
        std::to_string(d.key) + "</key><deviceInfo><label>" + d.label +
        "</label><summary>disk</summary></deviceInfo><backing "
        "xsi:type=\"VirtualDiskFlatVer2BackingInfo\">" +
        "<fileName>" + d.file_name() + "</fileName><diskMode>persistent</diskMode></backing>" +
        "<controllerKey>" + std::to_string(d.controller_key) + "</controllerKey><unitNumber>" +
        std::to_string(d.unit) + "</unitNumber><capacityInKB>" + std::to_string(mib * 1024) +
        "</capacityInKB></device></deviceChange></spec>";
    reconfigure(c.get(), vm, spec);
    (void)c->logout();
    return dir;
  }

  static void reconfigure(vix::vsphere::Client* c, const std::string& vm, const std::string& spec) {
    auto r = c->call("ReconfigVM_Task", {"VirtualMachine", vm}, spec);
    ASSERT_TRUE(r.ok()) << r.error().message;
    const std::string task = r->body.child("returnval").text().as_string();
    ASSERT_FALSE(task.empty());
    auto done = c->wait_for_task(task);
    ASSERT_TRUE(done.ok()) << done.error().message;
  }

  std::vector<std::string> args(const std::string& config, const std::string& transports) {
    vixtest::write_file(dir_.file("vixfs.conf"), config);
    return {"--server",        sim_->get("VCSIM_URL"),
            "--user",          "u",
            "--password-file", dir_.file("pw"),
            "--thumbprint",    sim_->get("VCSIM_SHA1"),
            "--name",          "sim",
            "--config",        dir_.file("vixfs.conf"),
            "--transports",    transports};
  }

  // SIGSTOPs a process (continued at teardown whatever happens).
  void freeze(pid_t pid) {
    ASSERT_EQ(kill(pid, SIGSTOP), 0) << strerror(errno);
    stopped_.push_back(pid);
  }
  void thaw(pid_t pid) {
    kill(pid, SIGCONT);
    stopped_.erase(std::remove(stopped_.begin(), stopped_.end(), pid), stopped_.end());
  }

  std::unique_ptr<Simulator> sim_;
  std::vector<pid_t> stopped_;
  TempDir dir_;
};

// ls -l and du of a fresh mount: st_blocks is what the disk's files take on the datastore, as
// layoutEx says (the live chain for current/, the snapshot's chain for a snapshot), and no disk
// is opened to learn it.
TEST_F(FsTreeRefresh, StBlocksComeFromLayoutExWithoutOpeningTheDisk) {
  start("-user u:p");
  const std::string vm_name = "DC0_H0_VM0";
  const std::string folder = real_disk(vm_name, 16);
  const std::string vm = sim_->get("VCSIM_VM_" + vm_name);
  const uint64_t at_snapshot = stored_bytes(folder, "disk1");
  ASSERT_GT(at_snapshot, 0u);
  std::string error;
  const std::string snap = sim_->snapshot("u", "p", vm, "s1", "", &error);
  ASSERT_FALSE(snap.empty()) << error;

  const std::string mnt = dir_.file("mnt");
  VixfsDaemon d(args("vixfs.inventory.ttlSeconds = 0\n", "file"), mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string current = mnt + "/sim/" + vm + "/current/scsi0-0.img";
  const std::string snapshot = mnt + "/sim/" + vm + "/" + snap + "/scsi0-0.img";
  auto ls = vixtest::run("ls -lsR " + sh_quote(mnt + "/sim/" + vm));
  EXPECT_EQ(ls.exit_code, 0) << ls.output;

  struct stat st {};
  ASSERT_EQ(stat(current.c_str(), &st), 0) << strerror(errno) << d.log();
  EXPECT_EQ(st.st_size, 16 << 20);
  const uint64_t now_stored = stored_bytes(folder, "disk1");
  EXPECT_EQ(static_cast<uint64_t>(st.st_blocks), (now_stored + 511) / 512) << d.log();
  ASSERT_EQ(stat(snapshot.c_str(), &st), 0) << strerror(errno) << d.log();
  EXPECT_EQ(static_cast<uint64_t>(st.st_blocks), (at_snapshot + 511) / 512) << d.log();

  // Nothing connected, nothing opened to map an allocation.
  const std::string log = d.log();
  EXPECT_EQ(log.find(": connected"), std::string::npos) << log;
  EXPECT_EQ(log.find("allocated in"), std::string::npos) << log;
  const std::string stats = read_text(mnt + "/.vixfs/stats.json");
  EXPECT_EQ(stats.find("\"transport\": \"file\""), std::string::npos) << stats;

  // The bytes are still the disk's.
  const std::string raw = dir_.file("want.raw");
  run_ok("qemu-img convert -q -f vmdk -O raw " + sh_quote(folder + "/disk1.vmdk") + " " +
         sh_quote(raw));
  EXPECT_EQ(vixtest::run("cmp " + sh_quote(raw) + " " + sh_quote(current)).exit_code, 0);
  EXPECT_TRUE(d.stop()) << d.log();
}

// A disk added to the VM (ReconfigVM_Task, operation add) while mounted shows up in current/
// after the inventory TTL, with its layoutEx st_blocks, and reads its own bytes.
TEST_F(FsTreeRefresh, CurrentShowsADiskAddedWhileMounted) {
  start("-user u:p");
  const std::string vm_name = "DC0_H0_VM1";
  const std::string folder = real_disk(vm_name, 8);
  const std::string vm = sim_->get("VCSIM_VM_" + vm_name);
  run_ok("qemu-img create -q -f vmdk " + sh_quote(folder + "/added.vmdk") + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P 0x77 0 4M' " + sh_quote(folder + "/added.vmdk"));
  // The simulator checks an existing disk by its -flat name.
  vixtest::write_file(folder + "/added-flat.vmdk", std::string());

  const std::string mnt = dir_.file("mnt");
  VixfsDaemon d(args("vixfs.inventory.ttlSeconds = 1\n", "file"), mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string cur = mnt + "/sim/" + vm + "/current";
  ASSERT_EQ(names_in(cur), (std::set<std::string>{"scsi0-0.img", "snapshot.json"})) << d.log();

  std::string error;
  auto c = sim_->login("u", "p", &error);
  ASSERT_NE(c, nullptr) << error;
  auto inv = c->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  const auto* v = inv->find_vm(vm);
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->disks.size(), 1u);
  const auto& d0 = v->disks[0];
  const std::string spec =
      "<spec><deviceChange><operation>add</operation><device xsi:type=\"VirtualDisk\">"
      "<key>-1</key><backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[LocalDS_0] " +
      vm_name + "/added.vmdk</fileName><diskMode>persistent</diskMode></backing><controllerKey>" +
      std::to_string(d0.controller_key) + "</controllerKey><unitNumber>" +
      std::to_string(d0.unit + 1) +
      "</unitNumber><capacityInKB>4096</capacityInKB></device></deviceChange></spec>";
  reconfigure(c.get(), vm, spec);
  (void)c->logout();

  const std::string added = "scsi0-" + std::to_string(d0.unit + 1) + ".img";
  // The listing changes once a lookup after the TTL has read the inventory again.
  std::set<std::string> names;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    names = names_in(cur);
    if (names.count(added)) break;
  }
  EXPECT_EQ(names, (std::set<std::string>{"scsi0-0.img", added, "snapshot.json"})) << d.log();
  struct stat st {};
  ASSERT_EQ(stat((cur + "/" + added).c_str(), &st), 0) << strerror(errno) << d.log();
  EXPECT_EQ(st.st_size, 4 << 20);
  EXPECT_EQ(static_cast<uint64_t>(st.st_blocks), (stored_bytes(folder, "added") + 511) / 512);
  const std::string raw = dir_.file("added.raw");
  run_ok("qemu-img convert -q -f vmdk -O raw " + sh_quote(folder + "/added.vmdk") + " " +
         sh_quote(raw));
  EXPECT_EQ(vixtest::run("cmp " + sh_quote(raw) + " " + sh_quote(cur + "/" + added)).exit_code, 0)
      << d.log();
  EXPECT_TRUE(d.stop()) << d.log();
}

// A read stuck on an NFC server that accepts and never answers (SIGSTOPped) holds no lock the
// listing needs: the VM's folders, the stat of its other disks (a snapshot's, never opened) and
// stats.json are served while the read waits, and the read then fails with EIO.
TEST_F(FsTreeRefresh, ListingIsServedWhileAReadIsStuck) {
  start("-user u:p -nfc");
  const std::string vm_name = "DC0_H0_VM0";
  real_disk(vm_name, 16);
  const std::string vm = sim_->get("VCSIM_VM_" + vm_name);
  std::string error;
  const std::string snap = sim_->snapshot("u", "p", vm, "s1", "", &error);
  ASSERT_FALSE(snap.empty()) << error;

  const std::string mnt = dir_.file("mnt");
  VixfsDaemon d(args("vixfs.inventory.ttlSeconds = 0\n"
                     "vixDiskLib.disklib.EnableCache = 0\n"
                     "vixDiskLib.nfc.ReadTimeoutMs = 3000\n"
                     "vixDiskLib.nfc.AcceptTimeoutMs = 3000\n"
                     "vixDiskLib.nfc.RequestTimeoutMs = 6000\n",
                     "nbd"),
                mnt, dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::string vm_dir = mnt + "/sim/" + vm;
  const std::string img = vm_dir + "/current/scsi0-0.img";
  const int fd = open(img.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno) << d.log();
  char first[4096];
  ASSERT_EQ(pread(fd, first, sizeof first, 0), 4096) << d.log();
  EXPECT_EQ(first[0], '\x3c');

  const pid_t nfc = static_cast<pid_t>(std::stol(read_text(sim_->nfc_dir() + "/pid")));
  ASSERT_GT(nfc, 0);
  freeze(nfc);
  std::atomic<bool> read_done{false};
  int read_errno = 0;
  std::thread reader([&] {
    char buf[65536];
    if (pread(fd, buf, sizeof buf, 12 << 20) < 0) read_errno = errno;
    read_done = true;
  });

  EXPECT_EQ(names_in(vm_dir), (std::set<std::string>{"current", snap})) << d.log();
  EXPECT_EQ(names_in(vm_dir + "/" + snap), (std::set<std::string>{"scsi0-0.img", "snapshot.json"}))
      << d.log();
  struct stat st {};
  EXPECT_EQ(stat((vm_dir + "/" + snap + "/scsi0-0.img").c_str(), &st), 0) << d.log();
  EXPECT_GT(st.st_blocks, 0);
  EXPECT_EQ(stat(img.c_str(), &st), 0) << d.log();
  EXPECT_FALSE(read_text(mnt + "/.vixfs/stats.json").empty());
  // All of it while the read still waits on the silent server.
  EXPECT_FALSE(read_done.load()) << d.log();

  reader.join();
  EXPECT_EQ(read_errno, EIO) << d.log();
  close(fd);
  // The snapshot's disk was never opened to answer stat.
  EXPECT_EQ(d.log().find(snap + "/scsi0-0.img: cannot open"), std::string::npos) << d.log();
  thaw(nfc);
  EXPECT_TRUE(d.stop(std::chrono::seconds(30))) << d.log();
}

// An inventory refresh into a vCenter that accepts and never answers (SIGSTOPped) costs the
// listings one refresh wait in all, not one per lookup: ls -l of every VM's current/ (a lookup
// per entry once the kernel's entries expired) is done long before the refresh gives up.
TEST_F(FsTreeRefresh, SilentVcenterCostsOneRefreshWaitNotOnePerLookup) {
  start("-user u:p");
  // Disks whose layoutEx gives a size: stat needs no open (which would wait on the server).
  for (const char* vm : {"DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"}) {
    real_disk(vm, 2);
  }
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon d(args("vixfs.inventory.ttlSeconds = 1\nvixfs.soap.timeoutMs = 12000\n", "file"), mnt,
                dir_.file("log"));
  ASSERT_TRUE(d.mounted()) << d.log();
  const std::set<std::string> vms = names_in(mnt + "/sim");
  ASSERT_GE(vms.size(), 4u);
  const pid_t sim = static_cast<pid_t>(std::stol(sim_->get("VCSIM_PID")));
  freeze(sim);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // past the TTL and entry timeout

  for (const std::string& vm : vms) {
    if (vm == "by-name") continue;
    auto r = vixtest::run("ls -l " + sh_quote(mnt + "/sim/" + vm + "/current"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("scsi0-0.img"), std::string::npos) << r.output;
  }
  EXPECT_EQ(d.log().find("inventory refresh failed"), std::string::npos)
      << "the listing took as long as the refresh's SOAP timeout\n"
      << d.log();
  thaw(sim);
  EXPECT_TRUE(d.stop(std::chrono::seconds(30))) << d.log();
}

}  // namespace
