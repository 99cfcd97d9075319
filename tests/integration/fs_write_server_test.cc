// vixfs --server -o rw against vcsim: which disks are writable (a powered-off VM's current/
// through the file transport, the bytes landing in the datastore's VMDK) and which are not
// (a powered-on VM's, a snapshot's, a disk the https transport opened; a VM powered on while
// mounted).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "integration/fs_write_support.h"
#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vixtest::expect_check_clean;
using vixtest::first_difference;
using vixtest::pread_all;
using vixtest::pwrite_all;
using vixtest::read_text;
using vixtest::run;
using vixtest::run_ok;
using vixtest::RwMount;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

// A vcsim server: DC0_H0_VM0 powered off (its current/ disk a real sparse VMDK), DC0_H0_VM1
// powered on with a snapshot.
class FsWriteServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
    std::filesystem::create_directories(dir);
    disk_ = dir + "/disk1.vmdk";
    std::filesystem::remove(disk_);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk_) + " 8M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 1M' " + sh_quote(disk_));
    auto c = client();
    if (!c) return;
    vm_off_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    vm_on_ = sim_->get("VCSIM_VM_DC0_H0_VM1");
    if (auto r = c->power_off(vm_off_); !r.ok()) {
      error_ = "power_off: " + r.error().message;
      return;
    }
    (void)c->logout();
    snapshot_ = sim_->snapshot("u", "p", vm_on_, "frozen", "", &error_);
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_FALSE(snapshot_.empty()) << error_;
    vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  }
  static std::unique_ptr<vix::vsphere::Client> client() { return sim_->login("u", "p", &error_); }
  std::vector<std::string> args(const std::string& transports) {
    return {"--server",
            sim_->get("VCSIM_URL"),
            "--user",
            "u",
            "--password-file",
            dir_.file("pw"),
            "--thumbprint",
            sim_->get("VCSIM_SHA1"),
            "--name",
            "sim",
            "--transports",
            transports,
            "-o",
            "rw"};
  }
  std::string disk_of(const std::string& vm, const std::string& snap = "current") {
    return dir_.file("mnt") + "/sim/" + vm + "/" + snap + "/scsi0-0.img";
  }
  static int open_errno(const std::string& path, int flags) {
    errno = 0;
    const int fd = open(path.c_str(), flags | O_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    return errno;
  }

  static Simulator* sim_;
  static std::string error_, disk_, vm_off_, vm_on_, snapshot_;
  TempDir dir_;
};
Simulator* FsWriteServer::sim_ = nullptr;
std::string FsWriteServer::error_, FsWriteServer::disk_, FsWriteServer::vm_off_,
    FsWriteServer::vm_on_, FsWriteServer::snapshot_;

TEST_F(FsWriteServer, PoweredOffVmsCurrentDiskTakesWritesThroughFile) {
  auto model = vixtest::qemu_raw(disk_);
  ASSERT_EQ(model.size(), 8u << 20);
  {
    RwMount m(args("file"), dir_.file("mnt"), dir_.file("log"));
    ASSERT_TRUE(m.mounted()) << m.log();
    const std::string img = disk_of(vm_off_);
    struct stat st {};
    ASSERT_EQ(stat(img.c_str(), &st), 0) << m.log();
    EXPECT_EQ(st.st_mode & 0777, 0644u);
    const int fd = open(img.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    std::mt19937_64 rng(3);
    for (int i = 0; i < 50; ++i) {
      const size_t len = 1 + rng() % 9000;
      const uint64_t off = rng() % (model.size() - len);
      std::vector<uint8_t> data(len);
      for (auto& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(pwrite_all(fd, data.data(), len, off)) << strerror(errno) << m.log();
      std::memcpy(model.data() + off, data.data(), len);
    }
    EXPECT_EQ(fsync(fd), 0) << strerror(errno);
    EXPECT_EQ(first_difference(pread_all(fd, model.size()), model), -1);
    close(fd);
    const std::string json =
        read_text(dir_.file("mnt") + "/sim/" + vm_off_ + "/current/snapshot.json");
    EXPECT_NE(json.find("\"transport\": \"file\""), std::string::npos) << json;
    EXPECT_NE(m.log().find(vm_off_ + "/current: connected read-write"), std::string::npos)
        << m.log();
    EXPECT_TRUE(m.stop()) << m.log();
  }
  expect_check_clean(disk_);
  EXPECT_EQ(first_difference(vixtest::qemu_raw(disk_), model), -1) << "the datastore's VMDK";
}

TEST_F(FsWriteServer, PoweredOnVmAndSnapshotDisksAreReadOnly) {
  auto a = args("file");
  a.back() = "rw,noredo";  // with redo (the default) a snapshot's disk writes into a log
  RwMount m(a, dir_.file("mnt"), dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  EXPECT_EQ(open_errno(disk_of(vm_on_), O_RDWR), EROFS) << m.log();
  EXPECT_EQ(open_errno(disk_of(vm_on_, snapshot_), O_WRONLY), EROFS) << m.log();
  struct stat st {};
  ASSERT_EQ(stat(disk_of(vm_on_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  ASSERT_EQ(stat(disk_of(vm_on_, snapshot_).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  const std::string log = m.log();
  EXPECT_NE(log.find(vm_on_ + "/current/scsi0-0.img: open for writing refused (EROFS): the "
                              "VM's power state is poweredOn"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(vm_on_ + "/" + snapshot_ +
                     "/scsi0-0.img: open for writing refused (EROFS): snapshot disks are never "
                     "written"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find(vm_on_ + "/current: connected read-write"), std::string::npos) << log;
}

TEST_F(FsWriteServer, HttpsDiskOfPoweredOffVmIsReadOnly) {
  const std::string before = run_ok("sha256sum " + sh_quote(disk_));
  RwMount m(args("https"), dir_.file("mnt"), dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string img = disk_of(vm_off_);
  EXPECT_EQ(open_errno(img, O_RDWR), EROFS) << m.log();
  struct stat st {};
  ASSERT_EQ(stat(img.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  EXPECT_EQ(open_errno(img, O_RDONLY), 0) << "reads still work";
  EXPECT_NE(m.log().find("open for writing refused (EROFS): the https transport is read-only"),
            std::string::npos)
      << m.log();
  EXPECT_TRUE(m.stop()) << m.log();
  EXPECT_EQ(run_ok("sha256sum " + sh_quote(disk_)), before);
}

// The write policy follows the inventory: once a refresh sees the VM powered on, its current/
// disk refuses writes, on a handle already open too.
TEST_F(FsWriteServer, PoweringOnTheVmEndsWrites) {
  vixtest::write_file(dir_.file("vixfs.conf"), std::string("vixfs.inventory.ttlSeconds = 1\n"));
  auto a = args("file");
  a.insert(a.end(), {"--config", dir_.file("vixfs.conf")});
  RwMount m(a, dir_.file("mnt"), dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string img = disk_of(vm_off_);
  const int fd = open(img.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno) << m.log();
  const char byte = 'w';
  EXPECT_EQ(pwrite(fd, &byte, 1, 4097), 1) << strerror(errno);
  auto c = client();
  ASSERT_NE(c, nullptr) << error_;
  // Powered off again whatever happens, for the other tests of the suite.
  struct PowerOffAgain {
    vix::vsphere::Client* c;
    std::string vm;
    ~PowerOffAgain() { (void)c->power_off(vm); }
  } again{c.get(), vm_off_};
  auto r = c->call("PowerOnVM_Task", {"VirtualMachine", vm_off_}, "");
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto done = c->wait_for_task(r->body.child("returnval").text().as_string());
  ASSERT_TRUE(done.ok()) << done.error().message;
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  struct stat st {};
  ASSERT_EQ(stat(img.c_str(), &st), 0);  // a lookup after the TTL: the inventory is read again
  errno = 0;
  EXPECT_EQ(pwrite(fd, &byte, 1, 4098), -1);
  EXPECT_EQ(errno, EROFS);
  close(fd);
  EXPECT_EQ(open_errno(img, O_RDWR), EROFS) << m.log();
  EXPECT_NE(m.log().find(vm_off_ + ": power state poweredOff -> poweredOn"), std::string::npos)
      << m.log();
}

}  // namespace
