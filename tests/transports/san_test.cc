// san against the simulator: a VM with raw device mapping disks (vcsim -rdm, tests/vcsim/san.go:
// govmomi's simulator panics on an RDM added with ReconfigVM_Task), the LUN a loop device over
// the raw image of a qemu-img VMDK, found through a wwn-0x<naa> link in a test device root. The
// same VMDK sits in the datastore, so https reads the same bytes when san steps aside.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "transports/loop_device.h"
#include "transports/nbd_transport_servers.h"
#include "transports/san.h"
#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vixDiskLib.h"
#include "vsphere/session.h"

using nbdtest::captured;
using vixtest::LoopDevice;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

constexpr const char* kVm = "DC0_H0_VM1";
constexpr const char* kRdm = "[LocalDS_0] DC0_H0_VM1/rdm.vmdk";
constexpr const char* kBigRdm = "[LocalDS_0] DC0_H0_VM1/rdm_big.vmdk";
constexpr const char* kDeltaRdm = "[LocalDS_0] DC0_H0_VM1/rdm_v-000001.vmdk";
constexpr const char* kNaa = "600a0b8000fa11ce0000000000000001";
constexpr const char* kBigNaa = "600a0b8000fa11ce0000000000000002";
constexpr uint64_t kCapacity = 8 << 20;

// vSphere's lunUuid (the VML name): NAA name type, disk, LUN 0, reserved, NAA, product bytes.
std::string lun_uuid(const std::string& naa) {
  return "0200000000" + naa + "56697866732d";
}

std::string rdm_flag(const std::string& file, const std::string& naa, uint64_t capacity,
                     const std::string& extra = "") {
  return "-rdm " + sh_quote(std::string("vm=") + kVm + ",file=" + file + ",lun=" + lun_uuid(naa) +
                            ",capacity=" + std::to_string(capacity) +
                            ",device=/vmfs/devices/disks/naa." + naa + extra);
}

class SanTransport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ =
        Simulator::start("-user u:p " + rdm_flag(kRdm, kNaa, kCapacity) + " " +
                             rdm_flag(kBigRdm, kBigNaa, 2 * kCapacity) + " " +
                             rdm_flag(kDeltaRdm, kNaa, kCapacity,
                                      ",mode=virtualMode,parent=[LocalDS_0] DC0_H0_VM1/rdm_v.vmdk"),
                         false, &error_)
            .release();
    if (sim_ == nullptr) return;
    fixtures_ = new TempDir();
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/" + kVm;
    std::filesystem::create_directories(dir);
    // The RDM's data, as a VMDK in the datastore (for https) and as a raw LUN (for san).
    rdm_vmdk_ = dir + "/rdm.vmdk";
    run_ok("qemu-img create -q -f vmdk " + sh_quote(rdm_vmdk_) + " 8M");
    run_ok(
        "qemu-io -f vmdk -c 'write -P 0x5a 0 1M' -c 'write -P 0xc3 3M 512' "
        "-c 'write -P 0x17 8388096 512' " +
        sh_quote(rdm_vmdk_));
    raw_ = fixtures_->file("lun.raw");
    run_ok("qemu-img convert -f vmdk -O raw " + sh_quote(rdm_vmdk_) + " " + sh_quote(raw_));
    // The VM's ordinary disk: a file in the datastore.
    flat_vmdk_ = dir + "/disk1.vmdk";
    std::filesystem::remove(flat_vmdk_);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk " + sh_quote(flat_vmdk_) + " 2M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x99 0 64k' " + sh_quote(flat_vmdk_));
    lun_ = new LoopDevice(LoopDevice::attach(raw_));
  }
  static void TearDownTestSuite() {
    delete lun_;  // detaches the loop device
    lun_ = nullptr;
    delete sim_;
    sim_ = nullptr;
    delete fixtures_;
    fixtures_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    if (!*lun_) GTEST_SKIP() << "no loop device: " << lun_->error();
  }
  void TearDown() override { vix::Library::exit(); }

  // A device root holding `link_name` -> the LUN's loop device (none when link_name is empty).
  std::string dev_root(const std::string& link_name = std::string("wwn-0x") + kNaa) {
    const std::string root = dir_.file("dev");
    std::filesystem::create_directories(root + "/disk/by-id");
    if (!link_name.empty()) std::filesystem::create_symlink(lun_->path(), root + "/" + link_name);
    return root;
  }

  void init(const std::string& config) {
    auto r = nbdtest::init_library_capturing_log(dir_.file("vixfs.conf"), config);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  static vix::ConnectSpec spec() {
    return sim_->connect_spec(sim_->get(std::string("VCSIM_VM_") + kVm));
  }

  // The san transport alone (no chain, no fallback): its own error code and message.
  static vix::Result<std::unique_ptr<vix::BlockDevice>> san_open(const std::string& path,
                                                                 uint32_t flags,
                                                                 bool read_only = true) {
    auto conn = vix::Connection::connect(spec(), read_only, "", "san");
    if (!conn.ok()) return std::move(conn).error();
    vix::TransportContext ctx{(*conn)->spec(), read_only, (*conn)->snapshot(), (*conn)->config(),
                              (*conn)->remote()};
    return vix::make_transport("san")->open(ctx, path, flags);
  }

  // Opens `path` through `modes`, checks the winner and the bytes against qemu-img's.
  void expect_opens(const std::string& modes, const std::string& path, const std::string& image,
                    const std::string& winner, uint32_t flags = VIXDISKLIB_FLAG_OPEN_READ_ONLY) {
    auto conn = vix::Connection::connect(spec(), true, "", modes);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(path, flags);
    ASSERT_TRUE(disk.ok()) << disk.error().message << "\n" << captured();
    EXPECT_EQ((*disk)->transport_name(), winner) << captured();
    const std::vector<uint8_t> want = vixtest::qemu_raw(image);
    ASSERT_EQ((*disk)->info().capacity_sectors * 512, want.size());
    std::vector<uint8_t> got(want.size());
    auto r = (*disk)->read(0, got.size() / 512, got.data());
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(got == want) << "through " << winner << " differs from qemu-img";
  }

  static Simulator* sim_;
  static std::string error_, rdm_vmdk_, flat_vmdk_, raw_;
  static TempDir* fixtures_;
  static LoopDevice* lun_;
  TempDir dir_;
};
Simulator* SanTransport::sim_ = nullptr;
std::string SanTransport::error_, SanTransport::rdm_vmdk_, SanTransport::flat_vmdk_,
    SanTransport::raw_;
TempDir* SanTransport::fixtures_ = nullptr;
LoopDevice* SanTransport::lun_ = nullptr;

TEST_F(SanTransport, ReadsAnRdmFromItsLun) {
  init("vixfs.san.devRoot = " + dev_root() + "\n");
  expect_opens("san", kRdm, rdm_vmdk_, "san");
  EXPECT_EQ(captured().find("transport san skipped"), std::string::npos) << captured();
}

TEST_F(SanTransport, FindsTheLunUnderDiskByIdAndUnbuffered) {
  init("vixfs.san.devRoot = " + dev_root(std::string("disk/by-id/wwn-0x") + kNaa) + "\n");
  expect_opens("san:https", kRdm, rdm_vmdk_, "san",
               VIXDISKLIB_FLAG_OPEN_READ_ONLY | VIXDISKLIB_FLAG_OPEN_UNBUFFERED);
  auto dev = san_open(kRdm, VIXDISKLIB_FLAG_OPEN_UNBUFFERED);
  ASSERT_TRUE(dev.ok()) << dev.error().message;
  EXPECT_TRUE((*dev)->read_only());  // a read-only connection
  EXPECT_EQ((*dev)->info().create_type, "device");
}

TEST_F(SanTransport, ALunNotVisibleHereLetsTheNextModeRead) {
  init("vixfs.san.devRoot = " + dev_root("") + "\n");
  expect_opens("san:https", kRdm, rdm_vmdk_, "https");
  const std::string log = captured();
  EXPECT_NE(log.find("transport san skipped"), std::string::npos) << log;
  EXPECT_NE(log.find(std::string("naa.") + kNaa), std::string::npos) << log;
  auto dev = san_open(kRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_NE(dev.error().message.find("not reachable"), std::string::npos) << dev.error().message;
}

TEST_F(SanTransport, ADiskInADatastoreNeedsVmfsAndTheNextModeWins) {
  init("vixfs.san.devRoot = " + dev_root() + "\n");
  const std::string path = std::string("[LocalDS_0] ") + kVm + "/disk1.vmdk";
  auto dev = san_open(path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_DISK_NEEDVMFS) << dev.error().message;
  expect_opens("san:https", path, flat_vmdk_, "https");
  const std::string log = captured();
  EXPECT_NE(log.find("transport san skipped"), std::string::npos) << log;
  EXPECT_NE(log.find("VMFS"), std::string::npos) << log;
}

TEST_F(SanTransport, ADeltaOverAnRdmNeedsVmfs) {
  // A virtual-mode RDM after a snapshot: the LUN is the base, the data is in the delta file.
  init("vixfs.san.devRoot = " + dev_root() + "\n");
  auto dev = san_open(kDeltaRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_DISK_NEEDVMFS) << dev.error().message;
  EXPECT_NE(dev.error().message.find("delta disk over a raw device mapping"), std::string::npos)
      << dev.error().message;
}

TEST_F(SanTransport, ALoneSanFallsBackToNbdsslThenHttps) {
  init("vixfs.san.devRoot = " + dev_root("") + "\n");
  expect_opens("san", kRdm, rdm_vmdk_, "https");
  const std::string log = captured();
  EXPECT_NE(log.find("falling back to nbdssl, then https"), std::string::npos) << log;
  EXPECT_NE(log.find("transport nbdssl skipped"), std::string::npos) << log;
  EXPECT_EQ(log.find("transport nbd skipped"), std::string::npos) << "never plain nbd: " << log;
}

TEST_F(SanTransport, BlacklistAndWhitelistAsVddk) {
  const std::string root = dev_root();
  const std::string link = root + "/wwn-0x" + kNaa;
  auto refused = [&](const std::string& config, const std::string& because) {
    init("vixfs.san.devRoot = " + root + "\n" + config);
    auto dev = san_open(kRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_FALSE(dev.ok()) << config;
    EXPECT_EQ(dev.error().code, VIX_E_NOT_SUPPORTED);
    EXPECT_NE(dev.error().message.find("not permitted"), std::string::npos) << dev.error().message;
    EXPECT_NE(dev.error().message.find(because), std::string::npos) << dev.error().message;
    vix::Library::exit();
  };
  auto allowed = [&](const std::string& config) {
    init("vixfs.san.devRoot = " + root + "\n" + config);
    auto dev = san_open(kRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    EXPECT_TRUE(dev.ok()) << config << ": " << dev.error().message;
    vix::Library::exit();
  };
  // The node the link resolves to, or the link itself, or a wildcard.
  refused("vixDiskLib.transport.san.blacklist = " + lun_->path() + "\n", lun_->path());
  refused("vixDiskLib.transport.san.blacklist = /dev/sdz, " + link + "\n", link);
  refused("vixDiskLib.transport.san.denyList = /dev/loop*\n", "/dev/loop*");
  refused("vixDiskLib.transport.san.blacklist = all\n", "all");
  refused(
      "vixDiskLib.transport.san.blacklist = all\n"
      "vixDiskLib.transport.san.whitelist = /dev/sdz\n",
      "all");
  allowed("vixDiskLib.transport.san.blacklist = /dev/sdz\n");
  allowed(
      "vixDiskLib.transport.san.blacklist = all\n"
      "vixDiskLib.transport.san.whitelist = " +
      lun_->path() + "\n");
  allowed(  // the whitelist wins over a blacklist entry
      "vixDiskLib.transport.san.denyList = /dev/loop*\n"
      "vixDiskLib.transport.san.allowList = " +
      link + "\n");
  // Through the chain: a refused LUN is skipped with its reason.
  init("vixfs.san.devRoot = " + root + "\nvixDiskLib.transport.san.blacklist = all\n");
  expect_opens("san:https", kRdm, rdm_vmdk_, "https");
  EXPECT_NE(captured().find("not permitted"), std::string::npos) << captured();
}

TEST_F(SanTransport, ALunSmallerThanTheDiskIsRefused) {
  const std::string root = dev_root();
  std::filesystem::create_symlink(lun_->path(), root + "/wwn-0x" + kBigNaa);
  init("vixfs.san.devRoot = " + root + "\n");
  auto dev = san_open(kBigRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_DISK_RAWTOOSMALL) << dev.error().message;
  EXPECT_NE(dev.error().message.find(kBigNaa), std::string::npos) << dev.error().message;
}

TEST_F(SanTransport, ReadWriteConnectionsWriteTheLun) {
  init("vixfs.san.devRoot = " + dev_root() + "\n");
  auto ro = san_open(kRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(ro.ok()) << ro.error().message;
  std::vector<uint8_t> sector(512, 0xab), before(512);
  EXPECT_EQ((*ro)->write(100, 1, sector.data()).error().code, VIX_E_FILE_READ_ONLY);
  auto rw = san_open(kRdm, 0, false);
  ASSERT_TRUE(rw.ok()) << rw.error().message;
  EXPECT_FALSE((*rw)->read_only());
  ASSERT_TRUE((*rw)->read(100, 1, before.data()).ok());
  ASSERT_TRUE((*rw)->write(100, 1, sector.data()).ok());
  ASSERT_TRUE((*rw)->flush().ok());
  std::vector<uint8_t> back(512);
  ASSERT_TRUE((*ro)->read(100, 1, back.data()).ok());
  EXPECT_TRUE(back == sector);
  ASSERT_TRUE((*rw)->write(100, 1, before.data()).ok());  // the other tests read the original
  ASSERT_TRUE((*rw)->flush().ok());
}

TEST_F(SanTransport, LocalConnectionsAreNotSupportedAtOnce) {
  init("vixfs.san.devRoot = " + dev_root() + "\n");
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, true, "", "san");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  const auto start = std::chrono::steady_clock::now();
  auto disk = (*conn)->open(flat_vmdk_, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(disk.ok());
  EXPECT_EQ(disk.error().code, VIX_E_NOT_SUPPORTED) << disk.error().message;
  EXPECT_LT(took, std::chrono::milliseconds(200));
}

// A VDDK client: the built libvixDiskLib.so, dlopen()ed, with its config file naming the root.
TEST_F(SanTransport, TheCApiReadsThroughSan) {
  char self[PATH_MAX] = {0};
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  // <build>/tests/transport_tests -> <build>/vddk/lib64
  const std::string lib = (std::filesystem::path(std::string(self, static_cast<size_t>(n)))
                               .parent_path()
                               .parent_path() /
                           "vddk/lib64/libvixDiskLib.so.8")
                              .string();
  void* dl = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(dl, nullptr) << dlerror();
  struct Closer {
    void* dl;
    ~Closer() { dlclose(dl); }
  } closer{dl};
#define SAN_SYM(name)                                                                         \
  auto name = reinterpret_cast<decltype(&VixDiskLib_##name)>(dlsym(dl, "VixDiskLib_" #name)); \
  ASSERT_NE(name, nullptr) << #name
  SAN_SYM(InitEx);
  SAN_SYM(Exit);
  SAN_SYM(ConnectEx);
  SAN_SYM(Disconnect);
  SAN_SYM(Open);
  SAN_SYM(Close);
  SAN_SYM(GetInfo);
  SAN_SYM(FreeInfo);
  SAN_SYM(Read);
  SAN_SYM(GetTransportMode);
#undef SAN_SYM
  const std::string conf = dir_.file("vddk.conf");
  vixtest::write_file(conf, "vixfs.san.devRoot = \"" + dev_root() + "\"\n");
  ASSERT_EQ(InitEx(7, 0, nullptr, nullptr, nullptr, nullptr, conf.c_str()), VIX_OK);
  std::string host = sim_->get("VCSIM_HOST"), thumb = sim_->get("VCSIM_SHA1"),
              vmx = "moref=" + sim_->get(std::string("VCSIM_VM_") + kVm), user = "u", pw = "p";
  VixDiskLibConnectParams p{};
  p.vmxSpec = vmx.data();
  p.serverName = host.data();
  p.thumbPrint = thumb.data();
  p.credType = VIXDISKLIB_CRED_UID;
  p.creds.uid.userName = user.data();
  p.creds.uid.password = pw.data();
  p.port = static_cast<uint32>(std::stoul(sim_->get("VCSIM_PORT")));
  VixDiskLibConnection conn = nullptr;
  ASSERT_EQ(ConnectEx(&p, TRUE, nullptr, "san:https", &conn), VIX_OK);
  VixDiskLibHandle h = nullptr;
  ASSERT_EQ(Open(conn, kRdm, VIXDISKLIB_FLAG_OPEN_READ_ONLY, &h), VIX_OK);
  EXPECT_STREQ(GetTransportMode(h), "san");
  VixDiskLibInfo* info = nullptr;
  ASSERT_EQ(GetInfo(h, &info), VIX_OK);
  const uint64_t sectors = info->capacity;
  FreeInfo(info);
  EXPECT_EQ(sectors * 512, kCapacity);
  std::vector<uint8_t> got(sectors * 512);
  ASSERT_EQ(Read(h, 0, sectors, got.data()), VIX_OK);
  EXPECT_TRUE(got == vixtest::qemu_raw(rdm_vmdk_));
  EXPECT_EQ(Close(h), VIX_OK);
  EXPECT_EQ(Disconnect(conn), VIX_OK);
  Exit();
}

// The lunUuid -> NAA mapping and the device names it leads to (no simulator needed).
TEST(SanNaa, FromLunUuidAndDeviceName) {
  EXPECT_EQ(vix::naa_from_lun_uuid("0200000000600a0b8000fa11ce000000000000000156697866732d"),
            "600a0b8000fa11ce0000000000000001");
  // LUN 261 in ESXi 7's two-byte LUN field; upper case; the vml. prefix.
  EXPECT_EQ(vix::naa_from_lun_uuid("vml.02000501006000EB3952315FBE0000000000000041695343534944"),
            "6000eb3952315fbe0000000000000041");
  // An 8-byte NAA (type 5) followed by the product bytes.
  EXPECT_EQ(vix::naa_from_lun_uuid("02000000005000c500a1b2c3d4535432303030"), "5000c500a1b2c3d4");
  EXPECT_EQ(vix::naa_from_lun_uuid("naa.600A0B8000FA11CE0000000000000001"),
            "600a0b8000fa11ce0000000000000001");
  EXPECT_EQ(vix::naa_from_lun_uuid("5000c500a1b2c3d4"), "5000c500a1b2c3d4");
  // Not NAA names: serial-number (01) and path-based (00) VMLs, junk, truncation.
  EXPECT_FALSE(vix::naa_from_lun_uuid("0100000000533130384a4d3231474e20202020202020").has_value());
  EXPECT_FALSE(vix::naa_from_lun_uuid("").has_value());
  EXPECT_FALSE(vix::naa_from_lun_uuid("0200000000600a0b80").has_value());
  EXPECT_FALSE(vix::naa_from_lun_uuid("02000000zz600a0b8000fa11ce0000000000000001").has_value());
  EXPECT_FALSE(vix::naa_from_lun_uuid("0200000000900a0b8000fa11ce0000000000000001").has_value());
  EXPECT_EQ(vix::naa_from_device_name("/vmfs/devices/disks/naa.600a0b8000fa11ce0000000000000001"),
            "600a0b8000fa11ce0000000000000001");
  EXPECT_FALSE(vix::naa_from_device_name("/vmfs/devices/disks/mpx.vmhba1:C0:T0:L0").has_value());
  const auto names = vix::san_device_candidates("/dev", "5000c500a1b2c3d4");
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4");
  EXPECT_NE(std::find(names.begin(), names.end(), "/dev/disk/by-id/scsi-35000c500a1b2c3d4"),
            names.end());
}

}  // namespace
