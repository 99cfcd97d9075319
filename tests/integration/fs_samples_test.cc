// vixfs --server over the sample VMs of scripts/sample-vms (made through the vSphere API by the
// simulator): every disk of the tree, snapshot or live, in every VMDK format and through a delta
// chain, reads as qemu-img reads its VMDK, through the file and the https transports (the VMFS6
// VM's SEsparse chain among them); a 64 GiB disk holding 10 MiB copies sparsely; a partition
// loop-mounted from the tree shows each delta's files only from that delta on.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"

using vixtest::read_text;
using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
using vixtest::VixfsDaemon;

namespace {

class FsSamples : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    samples_ = new TempDir();
    sim_ = Simulator::start_with_samples(samples_->path(), 64, "-user u:p -nfc", &error_).release();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete samples_;
    samples_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  }

  std::vector<std::string> args(const std::string& transports) {
    return sim_->mount_args("u", dir_.file("pw"), transports);
  }

  // Every disk file of the tree -> the local VMDK its snapshot.json names.
  std::map<std::string, std::string> disks_of_tree(const std::string& server_dir) {
    std::map<std::string, std::string> out;
    // No std::regex: GCC 12 with ASan warns inside <regex>, and -Werror stops the build.
    const std::string file_key = "{\"file\": \"", path_key = "\"datastorePath\": \"[LocalDS_0] ";
    for (const auto& vm : std::filesystem::directory_iterator(server_dir)) {
      if (vm.path().filename() == "by-name") continue;
      for (const auto& snap : std::filesystem::directory_iterator(vm.path())) {
        const std::string json = read_text(snap.path().string() + "/snapshot.json");
        for (size_t at = json.find(file_key); at != std::string::npos;
             at = json.find(file_key, at + 1)) {
          const size_t f = at + file_key.size();
          const size_t p = json.find(path_key, f);
          if (p == std::string::npos) break;
          const size_t pe = json.find('"', p + path_key.size());
          out[snap.path().string() + "/" + json.substr(f, json.find('"', f) - f)] =
              sim_->get("VCSIM_DS_LocalDS_0") + "/" +
              json.substr(p + path_key.size(), pe - p - path_key.size());
        }
      }
    }
    return out;
  }

  // shown: how snapshot.json names the transport ("nbdssl (nfc)"); "" for the mode's name.
  void expect_every_disk_equals_qemu(const std::string& transport, std::string shown = "") {
    if (shown.empty()) shown = transport;
    const std::string mnt = dir_.file("mnt");
    VixfsDaemon m(args(transport), mnt, dir_.file("log"));
    ASSERT_TRUE(m.mounted()) << m.log();
    const auto disks = disks_of_tree(mnt + "/sim");
    // 5 live disks, 5 snapshots' disks.
    ASSERT_EQ(disks.size(), 10u) << m.log();
    // Among them the VMFS6 VM's three, each the top of an SEsparse chain over a vmfs flat base.
    std::set<std::string> vmfs6;
    for (const auto& [img, vmdk] : disks) {
      const std::string dir = "/DC0_C0_RP0_VMFS6/";
      const size_t at = vmdk.find(dir);
      if (at == std::string::npos) continue;
      vmfs6.insert(vmdk.substr(at + dir.size()));
      EXPECT_NE(read_text(vmdk).find("createType=\"seSparse\""), std::string::npos) << vmdk;
    }
    EXPECT_EQ(vmfs6, (std::set<std::string>{"disk1-000001.vmdk", "disk1-000002.vmdk",
                                            "disk1-000003.vmdk"}));
    for (const auto& [img, vmdk] : disks) {
      SCOPED_TRACE(img + " <- " + vmdk);
      struct stat st {};
      ASSERT_EQ(stat(img.c_str(), &st), 0);
      if (st.st_size <= (64 << 20)) {
        // Every byte read through read(), not only what SEEK_DATA points at.
        const std::string raw = dir_.file("want.raw");
        run_ok("qemu-img convert -q -f vmdk -O raw " + sh_quote(vmdk) + " " + sh_quote(raw));
        auto r = run("cmp " + sh_quote(raw) + " " + sh_quote(img));
        EXPECT_EQ(r.exit_code, 0) << r.output;
      }
      // qemu-img compare skips what lseek(SEEK_HOLE) says is a hole: a hole claimed over data
      // shows as a difference.
      auto c = run("qemu-img compare -q -f raw -F vmdk " + sh_quote(img) + " " + sh_quote(vmdk));
      EXPECT_EQ(c.exit_code, 0) << c.output;
      const std::string json =
          read_text(std::filesystem::path(img).parent_path() / "snapshot.json");
      EXPECT_NE(json.find("\"transport\": \"" + shown + "\""), std::string::npos) << json;
    }
    EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
  }

  static Simulator* sim_;
  static TempDir* samples_;
  static std::string error_;
  TempDir dir_;
};
Simulator* FsSamples::sim_ = nullptr;
TempDir* FsSamples::samples_ = nullptr;
std::string FsSamples::error_;

TEST_F(FsSamples, EveryDiskThroughFileEqualsQemu) {
  expect_every_disk_equals_qemu("file");
}

TEST_F(FsSamples, EveryDiskThroughHttpsEqualsQemu) {
  expect_every_disk_equals_qemu("https");
}

// VMware's NFC (the simulator's NFC server, its bytes from qemu-nbd): the 64 GiB disk is compared
// where QueryAllocatedBlocks says there is data, so SEEK_HOLE over NFC is checked too.
TEST_F(FsSamples, EveryDiskThroughNbdsslOverNfcEqualsQemu) {
  expect_every_disk_equals_qemu("nbdssl", "nbdssl (nfc)");
}

// The host's NFC server killed for good under a mount: the read fails with EIO within the
// request budget, the daemon goes on serving the rest, and unmounts cleanly.
TEST_F(FsSamples, NfcHostGoneForGoodGivesEioAndTheMountStaysUsable) {
  vixtest::write_file(dir_.file("conf"), std::string("vixDiskLib.nfc.RequestTimeoutMs = 3000\n"
                                                     "vixDiskLib.disklib.EnableCache = 0\n"));
  auto a = args("nbd");
  a.insert(a.end(), {"--config", dir_.file("conf")});
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(a, mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string img = mnt + "/sim/" + sim_->get("VCSIM_VM_DC0_H0_VM1") + "/current/scsi0-0.img";
  ASSERT_EQ(run("dd if=" + sh_quote(img) + " of=/dev/null bs=1M count=2 2>&1").exit_code, 0)
      << m.log();
  std::string err;
  ASSERT_TRUE(sim_->kill_nfc(&err)) << err;
  const auto started = std::chrono::steady_clock::now();
  auto r = run("dd if=" + sh_quote(img) + " of=/dev/null bs=1M skip=8 count=2 2>&1");
  const auto took = std::chrono::steady_clock::now() - started;
  const bool restarted = sim_->restart_nfc(&err);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("Input/output error"), std::string::npos) << r.output;
  EXPECT_LT(took, std::chrono::seconds(20));
  EXPECT_TRUE(restarted) << err;
  // The daemon is alive and serves the tree.
  EXPECT_EQ(run("ls " + sh_quote(mnt + "/sim")).exit_code, 0) << m.log();
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

TEST_F(FsSamples, SixtyFourGibDiskCopiesSparsely) {
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(args("file"), mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string img =
      mnt + "/sim/" + sim_->get("VCSIM_VM_DC0_C0_RP0_VM1") + "/current/scsi0-0.img";
  struct stat st {};
  ASSERT_EQ(stat(img.c_str(), &st), 0) << m.log();
  EXPECT_EQ(st.st_size, int64_t{64} << 30);
  // Never below the 10 MiB of data (cp and tar read st_blocks), never near the capacity.
  EXPECT_GE(st.st_blocks * 512, 10 << 20);
  EXPECT_LT(st.st_blocks * 512, 64 << 20);
  const std::string copy = dir_.file("copy.img");
  run_ok("cp --sparse=always " + sh_quote(img) + " " + sh_quote(copy));
  struct stat cs {};
  ASSERT_EQ(stat(copy.c_str(), &cs), 0);
  EXPECT_EQ(cs.st_size, int64_t{64} << 30);
  EXPECT_LT(cs.st_blocks * 512, 64 << 20) << "the copy is not sparse";
  const std::string vmdk = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_C0_RP0_VM1/disk1.vmdk";
  auto c = run("qemu-img compare -q -f raw -F vmdk " + sh_quote(copy) + " " + sh_quote(vmdk));
  EXPECT_EQ(c.exit_code, 0) << c.output;
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

// The live disk is the delta child over the snapshot's base: its ext4 has /changed.txt, the
// snapshot's does not; both have the files the base was made from.
TEST_F(FsSamples, LoopMountedPartitionsShowTheDeltaChain) {
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(args("file"), mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = mnt + "/sim/by-name/DC0_H0_VM0";
  const std::string live =
      mnt + "/sim/" + sim_->get("VCSIM_VM_DC0_H0_VM0") + "/current/scsi0-0.img";
  const std::string frozen = vm + "/before-upgrade/scsi0-0.img";
  const std::string hello = read_text(samples_->file("files/hello.txt"));
  ASSERT_FALSE(hello.empty());
  for (const auto& [img, has_changed] : {std::pair{live, true}, std::pair{frozen, false}}) {
    SCOPED_TRACE(img);
    const std::string part = dir_.file("part");
    std::filesystem::create_directories(part);
    // The partition starts at sector 2048 (sample-vms); this kernel may make no loopNp1.
    auto loop = run("losetup -r --show -f -o 1048576 " + sh_quote(img));
    ASSERT_EQ(loop.exit_code, 0) << loop.output << m.log();
    const std::string dev = loop.output.substr(0, loop.output.find('\n'));
    auto mounted = run("mount -o ro,noload " + dev + " " + sh_quote(part));
    EXPECT_EQ(mounted.exit_code, 0) << mounted.output;
    if (mounted.exit_code == 0) {
      EXPECT_EQ(read_text(part + "/hello.txt"), hello);
      EXPECT_EQ(std::filesystem::exists(part + "/changed.txt"), has_changed);
      if (has_changed) {
        EXPECT_EQ(read_text(part + "/changed.txt"), "This file exists only in the delta child.\n");
      }
      run("umount " + sh_quote(part));
    }
    run("losetup -d " + dev);
  }
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

// The VMFS6 VM: each SEsparse delta adds a file to the ext4 of its flat base; a snapshot's disk
// shows the files up to its own delta, the live disk all of them.
TEST_F(FsSamples, LoopMountedPartitionsShowTheSeSparseChain) {
  const std::string mnt = dir_.file("mnt");
  VixfsDaemon m(args("file"), mnt, dir_.file("log"));
  ASSERT_TRUE(m.mounted()) << m.log();
  const std::string vm = mnt + "/sim/by-name/DC0_C0_RP0_VMFS6";
  std::error_code ec;
  const auto link = std::filesystem::read_symlink(vm + "/vmfs6-1", ec);  // ../../<vm>/<snapshot>
  ASSERT_FALSE(ec) << ec.message() << m.log();
  const std::string live =
      (std::filesystem::path(vm) / link.parent_path() / "current" / "scsi0-0.img").string();
  const std::string hello = read_text(samples_->file("files/hello.txt"));
  const std::vector<std::string> all = {"snapshot-1.txt", "snapshot-2.txt", "live.txt"};
  const std::vector<std::pair<std::string, size_t>> disks = {
      {vm + "/vmfs6-1/scsi0-0.img", 1}, {vm + "/vmfs6-2/scsi0-0.img", 2}, {live, 3}};
  for (const auto& [img, files] : disks) {
    SCOPED_TRACE(img);
    const std::string part = dir_.file("part");
    std::filesystem::create_directories(part);
    auto loop = run("losetup -r --show -f -o 1048576 " + sh_quote(img));
    ASSERT_EQ(loop.exit_code, 0) << loop.output << m.log();
    const std::string dev = loop.output.substr(0, loop.output.find('\n'));
    auto mounted = run("mount -o ro,noload " + dev + " " + sh_quote(part));
    EXPECT_EQ(mounted.exit_code, 0) << mounted.output;
    if (mounted.exit_code == 0) {
      EXPECT_EQ(read_text(part + "/hello.txt"), hello);
      for (size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(std::filesystem::exists(part + "/" + all[i]), i < files) << all[i];
        if (i < files) {
          EXPECT_EQ(read_text(part + "/" + all[i]),
                    "This file exists from VMFS6 delta " + std::to_string(i + 1) + " on.\n");
        }
      }
      run("umount " + sh_quote(part));
    }
    run("losetup -d " + dev);
  }
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
}

}  // namespace
