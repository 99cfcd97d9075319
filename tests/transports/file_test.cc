// The file transport (src/transports/file.cc) through the chain with `file` as the only mode:
// local .vmdk paths of a local connection, and datastore paths of a remote one (vcsim) whose
// datastore is a local folder, by its URL or mapped with vixfs.datastore.<name>; the VMFS6 sample
// VM's SEsparse chain through the C11 client. qemu-img makes the fixtures (vixfs-make-sesparse
// the SEsparse ones) and is the oracle for their bytes; every refusal names the mode.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/disk_read.h"
#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vixDiskLib.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

using vixtest::read_all;

constexpr const char* kDisk = "[LocalDS_0] DC0_H0_VM0/disk1.vmdk";

// In `dir`: `name`.vmdk, a delta child over a monolithicSparse base.vmdk, and `name`f.vmdk, a
// monolithicFlat disk; distinct patterns, shifted by `salt`, so a wrong parent or folder shows.
void make_disks(const std::string& dir, const std::string& name, uint8_t salt) {
  std::filesystem::create_directories(dir);
  const std::string base = dir + "/base.vmdk", child = dir + "/" + name + ".vmdk";
  const auto pattern = [salt](int p) { return std::to_string((p + salt) & 0xff); };
  std::filesystem::remove(child);
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 16M");
  run_ok("qemu-io -f vmdk -c 'write -P " + pattern(0x5a) + " 0 3M' -c 'write -P " + pattern(0x11) +
         " 9M 1M' " + sh_quote(base));
  run_ok("qemu-img create -q -f vmdk -F vmdk -b base.vmdk " + sh_quote(child));
  run_ok("qemu-io -f vmdk -c 'write -P " + pattern(0xc3) + " 1M 2M' -c 'write -P " + pattern(0x77) +
         " 15M 65536' " + sh_quote(child));
  const std::string flat = dir + "/" + name + "f.vmdk";
  run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(flat) + " 4M");
  run_ok("qemu-io -f vmdk -c 'write -P " + pattern(0x42) + " 512 1M' " + sh_quote(flat));
}

// ---- a local connection ---------------------------------------------------------------------

class FileTransportLocal : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = vix::Library::init({}, "", "");
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  void TearDown() override { vix::Library::exit(); }

  static vix::Result<std::unique_ptr<vix::Connection>> local() {
    return vix::Connection::connect(vix::ConnectSpec{}, true, "", "file");
  }

  TempDir dir_;
};

TEST_F(FileTransportLocal, DeltaChainAndFlatDiskEqualQemu) {
  make_disks(dir_.path(), "disk", 0);
  auto conn = local();
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  EXPECT_EQ((*conn)->modes(), std::vector<std::string>{"file"});
  for (const std::string name : {"disk.vmdk", "diskf.vmdk"}) {
    SCOPED_TRACE(name);
    auto disk = (*conn)->open(dir_.file(name), VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(), "file");
    EXPECT_STREQ(vix::transport_static_name((*disk)->transport_name()), "file");
    const auto want = vixtest::qemu_raw(dir_.file(name));
    ASSERT_EQ((*disk)->info().capacity_sectors * 512, want.size());
    EXPECT_TRUE(read_all(**disk) == want) << name << " through file differs from qemu-img";
  }
}

TEST_F(FileTransportLocal, RefusalsNameTheMode) {
  auto conn = local();
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  // A datastore path needs a server to say where the datastore is.
  auto ds = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.error().code, VIX_E_INVALID_ARG) << ds.error().message;
  EXPECT_EQ(ds.error().message.rfind("file: ", 0), 0u) << ds.error().message;
  EXPECT_NE(ds.error().message.find(kDisk), std::string::npos) << ds.error().message;

  // Open refuses an empty path before any transport; the transport itself does too.
  const std::string no_snapshot;
  vix::TransportContext ctx{(*conn)->spec(), true, no_snapshot, (*conn)->config(), nullptr};
  auto empty = vix::make_transport("file")->open(ctx, "", VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, VIX_E_INVALID_ARG) << empty.error().message;
  EXPECT_EQ(empty.error().message.rfind("file: ", 0), 0u) << empty.error().message;

  auto missing = (*conn)->open(dir_.file("missing.vmdk"), VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, VIX_E_FILE_NOT_FOUND) << missing.error().message;
  EXPECT_NE(missing.error().message.find("missing.vmdk"), std::string::npos)
      << missing.error().message;
}

// ---- a remote connection: datastore paths on a datastore that is a local folder -------------

class FileTransportRemote : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    ds_ = sim_->get("VCSIM_DS_LocalDS_0");
    make_disks(ds_ + "/DC0_H0_VM0", "disk1", 0);
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(sim_, nullptr) << error_; }
  void TearDown() override {
    conn_.reset();
    vix::Library::exit();
  }

  // Initialises the library with `config` and connects to the simulator's VM0 with `file` only.
  void connect(const std::string& config = "") {
    const std::string file = dir_.file("vixfs.conf");
    vixtest::write_file(file, config);
    auto r = vix::Library::init({}, "", file);
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto s = sim_->connect_spec(sim_->get("VCSIM_VM_DC0_H0_VM0"));
    auto c = vix::Connection::connect(s, true, "", "file");
    ASSERT_TRUE(c.ok()) << c.error().message;
    conn_ = std::move(c).value();
  }

  // The file transport alone, without the chain's fallback to the network: its own refusal.
  vix::Result<std::unique_ptr<vix::BlockDevice>> open_file_only(const std::string& path) {
    vix::TransportContext ctx{conn_->spec(), true, conn_->snapshot(), conn_->config(),
                              conn_->remote()};
    return vix::make_transport("file")->open(ctx, path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  }

  static Simulator* sim_;
  static std::string error_, ds_;
  TempDir dir_;
  std::unique_ptr<vix::Connection> conn_;
};
Simulator* FileTransportRemote::sim_ = nullptr;
std::string FileTransportRemote::error_, FileTransportRemote::ds_;

TEST_F(FileTransportRemote, DatastoreUrlFolderEqualsQemu) {
  connect();
  for (const std::string file : {"disk1.vmdk", "disk1f.vmdk"}) {
    SCOPED_TRACE(file);
    auto disk = conn_->open("[LocalDS_0] DC0_H0_VM0/" + file, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    EXPECT_EQ((*disk)->transport_name(), "file");
    EXPECT_TRUE(read_all(**disk) == vixtest::qemu_raw(ds_ + "/DC0_H0_VM0/" + file))
        << file << " through file differs from qemu-img";
  }
}

// vixfs.datastore.<name> wins over the datastore's URL: the disks of the mapped folder (other
// patterns than the datastore's own) are the ones read.
TEST_F(FileTransportRemote, MappedFolderIsReadInsteadOfTheUrl) {
  const std::string mapped = dir_.file("mapped");
  make_disks(mapped + "/DC0_H0_VM0", "disk1", 0x21);
  connect("vixfs.datastore.LocalDS_0 = " + mapped + "\n");
  auto disk = conn_->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "file");
  const auto got = read_all(**disk);
  EXPECT_TRUE(got == vixtest::qemu_raw(mapped + "/DC0_H0_VM0/disk1.vmdk"));
  EXPECT_FALSE(got == vixtest::qemu_raw(ds_ + "/DC0_H0_VM0/disk1.vmdk"));
}

TEST_F(FileTransportRemote, MappingToNoFolderIsRefusedNamingModeAndKey) {
  connect("vixfs.datastore.LocalDS_0 = " + dir_.file("not-there") + "\n");
  auto dev = open_file_only(kDisk);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_NOT_SUPPORTED) << dev.error().message;
  EXPECT_EQ(dev.error().message.rfind("file: ", 0), 0u) << dev.error().message;
  EXPECT_NE(dev.error().message.find("vixfs.datastore.LocalDS_0"), std::string::npos)
      << dev.error().message;
  EXPECT_NE(dev.error().message.find("not-there"), std::string::npos) << dev.error().message;
}

// ---- the VMFS6 sample VM: SEsparse deltas over a vmfs flat base ----------------------------

// scripts/sample-vms's DC0_C0_RP0_VMFS6 (three SEsparse deltas, vixfs-make-sesparse) as a backup
// product reads its live disk: the C11 client, the library dlopen()ed, over `file` (the
// datastore's URL is a local folder) and over `https`, equal to qemu-img's reading of the chain.
class FileTransportVmfs6 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    samples_ = new TempDir();
    sim_ = Simulator::start_with_samples(samples_->path(), 32, "-user u:p", &error_).release();
    if (sim_ == nullptr) return;
    auto client = sim_->login("u", "p", &error_);
    if (!client) return;
    auto inv = client->inventory();
    (void)client->logout();
    if (!inv.ok()) {
      error_ = inv.error().message;
      return;
    }
    for (const auto& vm : inv->vms) {
      if (vm.name != "DC0_C0_RP0_VMFS6") continue;
      vm_ = new std::string(vm.moref);
      if (!vm.disks.empty()) live_ = new std::string(vm.disks[0].file_name());
    }
    if (!vm_ || !live_) error_ = "no VM DC0_C0_RP0_VMFS6 with a disk in the inventory";
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete samples_;
    samples_ = nullptr;
    delete vm_;
    vm_ = nullptr;
    delete live_;
    live_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_NE(live_, nullptr) << error_;
  }

  static TempDir* samples_;
  static Simulator* sim_;
  static std::string error_;
  static std::string *vm_, *live_;
};
TempDir* FileTransportVmfs6::samples_ = nullptr;
Simulator* FileTransportVmfs6::sim_ = nullptr;
std::string FileTransportVmfs6::error_;
std::string* FileTransportVmfs6::vm_ = nullptr;
std::string* FileTransportVmfs6::live_ = nullptr;

TEST_F(FileTransportVmfs6, TheC11ClientReadsTheLiveSeSparseChainOverFileAndHttps) {
  EXPECT_EQ(*live_, "[LocalDS_0] DC0_C0_RP0_VMFS6/disk1-000003.vmdk");
  const std::string local = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_C0_RP0_VMFS6/disk1-000003.vmdk";
  // The chain the plan built: three SEsparse deltas over a vmfs flat base.
  const auto desc = vixtest::read_file(local);
  EXPECT_NE(std::string(desc.begin(), desc.end()).find("createType=\"seSparse\""),
            std::string::npos);
  TempDir tmp;
  run_ok("qemu-img convert -U -O raw " + sh_quote(local) + " " + sh_quote(tmp.file("raw")));
  for (const std::string mode : {"file", "https"}) {
    SCOPED_TRACE(mode);
    auto r = vixtest::run("C11_PASSWORD=p " + sh_quote(VIXFS_C11_CLIENT) + " " +
                          sh_quote(VIXFS_VDDK_LIBDIR) + " --remote " + sim_->get("VCSIM_HOST") +
                          " " + sim_->get("VCSIM_PORT") + " " + sim_->get("VCSIM_SHA1") +
                          " u moref=" + *vm_ + " " + sh_quote(*live_) + " " + mode + " " +
                          sh_quote(tmp.file("raw")) + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("all checks passed"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(mode), std::string::npos) << r.output;
  }
}

}  // namespace
