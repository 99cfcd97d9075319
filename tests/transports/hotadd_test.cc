// hotadd against vcsim: the simulator plays vCenter (ReconfigVM_Task attaches the disk to the
// proxy VM), HotaddKernel plays the proxy's kernel and udev (a loop device linked by the disk's
// uuid). Attach -> read -> detach, the snapshot's disk, the attach timeout, the refusals that need
// no SOAP call, the journal's ownership rules, and kill -9 of a vixfs holding a hot-added disk.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "support/fixtures.h"
#include "support/vixfs_daemon.h"
#include "support/vsphere_sim.h"
#include "transports/hotadd.h"
#include "transports/hotadd_journal.h"
#include "transports/hotadd_kernel.h"
#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vsphere/client.h"

using vixtest::HotaddKernel;
using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
namespace hotadd = vix::hotadd;

namespace {

// Pure parts first: no server needed.

TEST(HotaddNames, ScsiLinkNameIsTheUuidInLowerHex) {
  EXPECT_EQ(hotadd::scsi_link_name("6000C29a-0000-0000-0000-000000000001"),
            "scsi-36000c29a000000000000000000000001");
  // vSphere also prints uuids as space-separated bytes.
  EXPECT_EQ(hotadd::scsi_link_name("60 00 C2 9a 00 00 00 00-00 00 00 00 00 00 00 01"),
            "scsi-36000c29a000000000000000000000001");
  EXPECT_EQ(hotadd::scsi_link_name(""), "");
  EXPECT_EQ(hotadd::scsi_link_name("6000C29a-0000-0000-0000-00000000000"), "");
  EXPECT_EQ(hotadd::scsi_link_name("6000C29a-0000-0000-0000-00000000000g"), "");
  EXPECT_EQ(hotadd::scsi_link_name("../../etc/passwd"), "");
}

TEST(HotaddNames, BiosUuidMatchesDirectAndByteSwapped) {
  const char* vm = "265104de-1472-547c-b873-6dc7883fb6cb";
  EXPECT_TRUE(hotadd::bios_uuid_matches("265104DE-1472-547C-B873-6DC7883FB6CB", vm));
  // SMBIOS order: the first three fields little-endian.
  EXPECT_TRUE(hotadd::bios_uuid_matches("de045126-7214-7c54-b873-6dc7883fb6cb", vm));
  EXPECT_FALSE(hotadd::bios_uuid_matches("de045126-7214-7c54-b873-6dc7883fb6cc", vm));
  EXPECT_FALSE(hotadd::bios_uuid_matches("", vm));
  EXPECT_FALSE(hotadd::bios_uuid_matches("not-a-uuid", "not-a-uuid"));
}

TEST(HotaddJournal, ServerKeyIsOneNamePerServer) {
  EXPECT_EQ(hotadd::server_key("VC.example.com", 0), "vc.example.com:443");
  EXPECT_EQ(hotadd::server_key("vc.example.com:443", 0), "vc.example.com:443");
  EXPECT_EQ(hotadd::server_key("https://vc.example.com/sdk", 0), "vc.example.com:443");
  EXPECT_EQ(hotadd::server_key("https://vc.example.com:8443/sdk", 0), "vc.example.com:8443");
  EXPECT_EQ(hotadd::server_key("127.0.0.1", 8989), "127.0.0.1:8989");
  EXPECT_EQ(hotadd::server_key("[::1]:9443", 0), "[::1]:9443");
}

TEST(HotaddJournal, ProcessIdentityIsPidAndStartTime) {
  const hotadd::ProcessId self = hotadd::self_process();
  EXPECT_EQ(self.pid, getpid());
  EXPECT_GT(self.start_time, 0u);
  EXPECT_TRUE(hotadd::process_alive(self));
  hotadd::ProcessId reused = self;
  reused.start_time += 1;  // same pid, another process
  EXPECT_FALSE(hotadd::process_alive(reused));
  EXPECT_FALSE(hotadd::process_alive(hotadd::ProcessId{}));
  // A child that has exited and been reaped.
  const std::string out = run_ok("sh -c 'echo $$'");
  hotadd::ProcessId dead{static_cast<pid_t>(std::stol(out)), 1};
  EXPECT_FALSE(hotadd::process_alive(dead));
}

TEST(HotaddJournal, RoundTripsAndRefusesMalformedFiles) {
  TempDir dir;
  hotadd::Journal j(dir.path());
  hotadd::JournalEntry e;
  e.id = hotadd::new_entry_id();
  e.server = "vc:443";
  e.proxy = "vm-60";
  e.controller_key = 202;
  e.unit = 1;
  e.file = "[LocalDS_0] a b/disk1.vmdk";
  e.owner = hotadd::self_process();
  ASSERT_TRUE(j.add(e).ok());
  ASSERT_TRUE(j.set_device_key(e.id, 204).ok());
  auto all = j.entries();
  ASSERT_TRUE(all.ok()) << all.error().message;
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].file, e.file);
  EXPECT_EQ((*all)[0].device_key, 204);
  EXPECT_EQ((*all)[0].owner, e.owner);
  ASSERT_TRUE(j.abandon(e.id).ok());
  EXPECT_EQ(j.entries()->at(0).owner.pid, 0);
  ASSERT_TRUE(j.remove(e.id).ok());
  EXPECT_TRUE(j.entries()->empty());

  hotadd::JournalEntry bad = e;
  bad.file = "x\ty";
  EXPECT_FALSE(j.add(bad).ok());

  for (const std::string& text :
       {std::string("something else\n"),
        std::string("vixfs-hotadd-journal 1\nid\tvc\tvm-60\t204\t202\t1\n"),
        std::string("vixfs-hotadd-journal 1\nid\tvc\tvm-60\tX\t202\t1\t5\t6\tf\n"),
        std::string("vixfs-hotadd-journal 1\nid\tvc\tvm-60\t1\t202\t1\t99999999999\t6\tf\n")}) {
    auto r = hotadd::Journal::parse(text, "j");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find("j line"), std::string::npos) << r.error().message;
  }
  vixtest::write_file(j.path(), std::string("garbage\n"));
  auto r = j.entries();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(j.path()), std::string::npos) << r.error().message;
}

constexpr const char* kDisk = "[LocalDS_0] DC0_H0_VM0/disk1.vmdk";
constexpr const char* kUuid = "6000C29a-0000-0000-0000-0000000000a1";
constexpr const char* kOtherDisk = "[LocalDS_0] DC0_C0_RP0_VM0/disk1.vmdk";  // no backing uuid
constexpr uint64_t kCapacity = 4 << 20;

class HotaddTransport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    source_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    proxy_ = sim_->get("VCSIM_VM_DC0_H0_VM1");
    const std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0";
    image_ = dir + "/disk1.vmdk";
    std::filesystem::remove(image_);
    std::filesystem::remove(dir + "/disk1-flat.vmdk");
    run_ok("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + sh_quote(image_) + " 4M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x5a 0 1M' -c 'write -P 0x11 3M 4096' " +
           sh_quote(image_));
    auto c = client();
    if (!c) return;
    // The simulator's disks have no backing uuid (quirk 9): give the source disk one, and its
    // real capacity, as vSphere would report them.
    auto inv = c->inventory();
    if (!inv.ok()) {
      error_ = inv.error().message;
      return;
    }
    const auto* vm = inv->find_vm(source_);
    if (vm == nullptr || vm->disks.empty()) {
      error_ = "no disk on " + source_;
      return;
    }
    const auto& d = vm->disks[0];
    const std::string spec =
        "<spec><deviceChange><operation>edit</operation><device xsi:type=\"VirtualDisk\"><key>" +
        std::to_string(d.key) + "</key><deviceInfo><label>" + d.label +
        "</label><summary>4,096 KB</summary></deviceInfo><backing "
        "xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>" +
        kDisk + "</fileName><diskMode>persistent</diskMode><uuid>" + kUuid +
        "</uuid></backing><controllerKey>" + std::to_string(d.controller_key) +
        "</controllerKey><unitNumber>" + std::to_string(d.unit) +
        "</unitNumber><capacityInKB>4096</capacityInKB><capacityInBytes>" +
        std::to_string(kCapacity) + "</capacityInBytes></device></deviceChange></spec>";
    auto r = c->call("ReconfigVM_Task", {"VirtualMachine", source_}, spec);
    if (!r.ok()) {
      error_ = r.error().message;
      return;
    }
    auto done = c->wait_for_task(r->body.child("returnval").text().as_string());
    if (!done.ok()) {
      error_ = done.error().message;
      return;
    }
    // After the reconfiguration: a snapshot shares the VM's device array (quirk 8).
    auto snap = c->create_snapshot(source_, "hotadd", "", false, false);
    if (!snap.ok()) {
      error_ = "create_snapshot: " + snap.error().message;
      return;
    }
    snapshot_ = *snap;
    (void)c->logout();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_TRUE(error_.empty()) << error_;
    tmp_ = dir_.file("tmp");
    dev_root_ = dir_.file("by-id");
    std::filesystem::create_directories(tmp_);
    std::filesystem::create_directories(dev_root_);
    auto c = client();
    ASSERT_NE(c, nullptr) << error_;
    proxy_before_ = device_summary(*c);
  }
  void TearDown() override {
    vix::Library::exit();
    // Whatever a test did, the proxy is as it was.
    if (auto c = client()) {
      EXPECT_EQ(device_summary(*c), proxy_before_);
    }
  }

  static std::unique_ptr<vix::vsphere::Client> client() { return sim_->login("u", "p", &error_); }

  // Every device of the proxy as "key type controller:unit file mode", in order.
  static std::vector<std::string> device_summary(vix::vsphere::Client& c) {
    std::vector<std::string> out;
    auto devices = c.devices_of(proxy_);
    EXPECT_TRUE(devices.ok()) << devices.error().message;
    if (!devices.ok()) return out;
    for (const auto& d : *devices) {
      out.push_back(std::to_string(d.key) + " " + d.type + " " + std::to_string(d.controller_key) +
                    ":" + std::to_string(d.unit) + " " + d.file_name + " " + d.disk_mode);
    }
    return out;
  }

  std::string config(int64_t timeout_ms = 20000, const std::string& extra = "") const {
    return "tmpDirectory = \"" + tmp_ + "\"\nvixfs.hotadd.proxyVm = \"" + proxy_ +
           "\"\nvixfs.hotadd.devRoot = \"" + dev_root_ +
           "\"\nvixfs.hotadd.attachTimeoutMs = " + std::to_string(timeout_ms) + "\n" + extra;
  }

  void init(const std::string& text) {
    const std::string file = dir_.file("vixfs.conf");
    vixtest::write_file(file, text);
    auto r = vix::Library::init({}, "", file);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  static vix::ConnectSpec spec(const std::string& vm) { return sim_->connect_spec(vm); }

  std::unique_ptr<HotaddKernel> kernel(bool writable = false) {
    auto c = client();
    EXPECT_NE(c, nullptr) << error_;
    return std::make_unique<HotaddKernel>(
        std::move(c), proxy_, dev_root_,
        std::map<std::string, HotaddKernel::Disk>{{kDisk, {kUuid, image_, writable}}});
  }

  std::vector<hotadd::JournalEntry> journal() {
    auto e = hotadd::Journal(tmp_).entries();
    EXPECT_TRUE(e.ok()) << e.error().message;
    return e.ok() ? *e : std::vector<hotadd::JournalEntry>{};
  }

  // Opens kDisk with the hotadd transport alone (no fallback to the network modes).
  vix::Result<std::unique_ptr<vix::BlockDevice>> open_hotadd(vix::Connection& conn,
                                                             const std::string& path = kDisk) {
    vix::TransportContext ctx{conn.spec(), true, conn.snapshot(), conn.config(), conn.remote()};
    return vix::make_transport("hotadd")->open(ctx, path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  }

  static bool has_disk(const std::vector<std::string>& summary, const std::string& file) {
    for (const auto& s : summary)
      if (s.find(" " + file + " ") != std::string::npos) return true;
    return false;
  }

  static Simulator* sim_;
  static std::string error_, source_, proxy_, image_, snapshot_;
  TempDir dir_;
  std::string tmp_, dev_root_;
  std::vector<std::string> proxy_before_;
};
Simulator* HotaddTransport::sim_ = nullptr;
std::string HotaddTransport::error_, HotaddTransport::source_, HotaddTransport::proxy_,
    HotaddTransport::image_, HotaddTransport::snapshot_;

TEST_F(HotaddTransport, AttachReadDetach) {
  init(config());
  auto k = kernel();
  const auto want = vixtest::qemu_raw(image_);
  ASSERT_EQ(want.size(), kCapacity);
  {
    auto conn = vix::Connection::connect(spec(source_), true, "", "hotadd");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message << " / " << k->error();
    EXPECT_EQ((*disk)->transport_name(), "hotadd");

    // Attached to the proxy, read-only for the guest, journalled under this process.
    auto c = client();
    ASSERT_NE(c, nullptr);
    const auto during = device_summary(*c);
    EXPECT_EQ(during.size(), proxy_before_.size() + 1);
    bool nonpersistent = false;
    for (const auto& s : during)
      if (s.find(std::string(" ") + kDisk + " independent_nonpersistent") != std::string::npos)
        nonpersistent = true;
    EXPECT_TRUE(nonpersistent) << ::testing::PrintToString(during);
    const auto entries = journal();
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].proxy, proxy_);
    EXPECT_EQ(entries[0].file, kDisk);
    EXPECT_NE(entries[0].device_key, 0);
    EXPECT_EQ(entries[0].owner, hotadd::self_process());

    std::vector<uint8_t> got(want.size());
    ASSERT_EQ((*disk)->info().capacity_sectors * 512, want.size());
    auto r = (*disk)->read(0, got.size() / 512, got.data());
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(got == want) << "hotadd bytes differ from qemu-img's";
  }
  // Closed: detached, journal empty, the kernel side saw both.
  EXPECT_TRUE(journal().empty());
  auto c = client();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(device_summary(*c), proxy_before_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (k->exposed() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(k->events(), (std::vector<std::string>{std::string("attach ") + kDisk,
                                                   std::string("detach ") + kDisk}));
  EXPECT_EQ(k->error(), "");
}

TEST_F(HotaddTransport, ReadsTheSnapshotsDisk) {
  init(config());
  auto k = kernel();
  auto conn = vix::Connection::connect(spec(source_), true, snapshot_, "hotadd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(kDisk, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message << " / " << k->error();
  EXPECT_EQ((*disk)->transport_name(), "hotadd");
  const auto want = vixtest::qemu_raw(image_);
  std::vector<uint8_t> got(want.size());
  auto r = (*disk)->read(0, got.size() / 512, got.data());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(got == want);
  // A second open of the same disk on this proxy is refused, not attached twice.
  auto twice = open_hotadd(**conn);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, VIX_E_OBJECT_IS_BUSY) << twice.error().message;
  disk->reset();
  EXPECT_TRUE(journal().empty());
}

TEST_F(HotaddTransport, ReadWriteOpenOfTheLiveDiskIsPersistent) {
  init(config());
  auto k = kernel(true);
  auto conn = vix::Connection::connect(spec(source_), false, "", "hotadd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  vix::TransportContext ctx{(*conn)->spec(), false, (*conn)->snapshot(), (*conn)->config(),
                            (*conn)->remote()};
  auto dev = vix::make_transport("hotadd")->open(ctx, kDisk, 0);
  ASSERT_TRUE(dev.ok()) << dev.error().message << " / " << k->error();
  EXPECT_FALSE((*dev)->read_only());
  auto c = client();
  ASSERT_NE(c, nullptr);
  const auto during = device_summary(*c);
  bool persistent = false;
  for (const auto& s : during)
    if (s.find(std::string(" ") + kDisk + " independent_persistent") != std::string::npos)
      persistent = true;
  EXPECT_TRUE(persistent) << ::testing::PrintToString(during);
  std::vector<uint8_t> sector(512, 0xc3), back(512);
  ASSERT_TRUE((*dev)->write(100, 1, sector.data()).ok());
  ASSERT_TRUE((*dev)->flush().ok());
  ASSERT_TRUE((*dev)->read(100, 1, back.data()).ok());
  EXPECT_EQ(back, sector);
  dev->reset();
  EXPECT_TRUE(journal().empty());
}

TEST_F(HotaddTransport, AttachTimeoutDetachesAgain) {
  init(config(300));  // no kernel helper: the device link never appears
  auto conn = vix::Connection::connect(spec(source_), true, "", "hotadd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  const auto t0 = std::chrono::steady_clock::now();
  auto dev = open_hotadd(**conn);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_FALSE(dev.ok());
  const std::string& msg = dev.error().message;
  EXPECT_NE(msg.find("scsi-36000c29a0000000000000000000000a1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did not appear within vixfs.hotadd.attachTimeoutMs = 300 ms"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("detached again"), std::string::npos) << msg;
  EXPECT_GE(ms, 300);
  EXPECT_LT(ms, 10000);
  EXPECT_TRUE(journal().empty());
  auto c = client();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(device_summary(*c), proxy_before_);
}

TEST_F(HotaddTransport, RefusesWhatItCannotServeWithClearReasons) {
  // No proxyVm and no BIOS uuid on this host.
  init("tmpDirectory = \"" + tmp_ + "\"\nvixfs.hotadd.productUuidFile = \"" + dir_.file("none") +
       "\"\n");
  {
    auto conn = vix::Connection::connect(spec(source_), true, "", "hotadd");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto dev = open_hotadd(**conn);
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code, VIX_E_NOT_SUPPORTED);
    EXPECT_NE(dev.error().message.find("vixfs.hotadd.proxyVm is not set"), std::string::npos)
        << dev.error().message;
  }
  vix::Library::exit();
  // The BIOS uuid of the proxy, in SMBIOS byte order, finds it; then the proxy reading itself is
  // refused.
  const std::string product = dir_.file("product_uuid");
  {
    auto c = client();
    ASSERT_NE(c, nullptr);
    auto inv = c->inventory();
    ASSERT_TRUE(inv.ok());
    const auto* p = inv->find_vm(proxy_);
    ASSERT_NE(p, nullptr);
    std::string u = p->uuid;  // e.g. 39365506-5a0a-5fd0-be10-9586ad53aaad
    ASSERT_EQ(u.size(), 36u);
    const std::string swapped = u.substr(6, 2) + u.substr(4, 2) + u.substr(2, 2) + u.substr(0, 2) +
                                "-" + u.substr(11, 2) + u.substr(9, 2) + "-" + u.substr(16, 2) +
                                u.substr(14, 2) + u.substr(18);
    vixtest::write_file(product, swapped + "\n");
  }
  init("tmpDirectory = \"" + tmp_ + "\"\nvixfs.hotadd.productUuidFile = \"" + product + "\"\n");
  {
    auto conn = vix::Connection::connect(spec(proxy_), true, "", "hotadd");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto dev = open_hotadd(**conn, "[LocalDS_0] DC0_H0_VM1/disk1.vmdk");
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code, VIX_E_NOT_SUPPORTED);
    EXPECT_NE(dev.error().message.find("the proxy VM " + proxy_ + " is the VM being read"),
              std::string::npos)
        << dev.error().message;
  }
  vix::Library::exit();
  init(config());
  {
    // A disk the VM does not have; a disk without a backing uuid; a local connection.
    auto conn = vix::Connection::connect(spec(source_), true, "", "hotadd");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto dev = open_hotadd(**conn, "[LocalDS_0] DC0_H0_VM0/nope.vmdk");
    ASSERT_FALSE(dev.ok());
    EXPECT_EQ(dev.error().code, VIX_E_OBJECT_NOT_FOUND) << dev.error().message;
    auto other =
        vix::Connection::connect(spec(sim_->get("VCSIM_VM_DC0_C0_RP0_VM0")), true, "", "hotadd");
    ASSERT_TRUE(other.ok()) << other.error().message;
    dev = open_hotadd(**other, kOtherDisk);
    ASSERT_FALSE(dev.ok());
    EXPECT_NE(dev.error().message.find("has no backing uuid"), std::string::npos)
        << dev.error().message;
    auto local = vix::Connection::connect(vix::ConnectSpec{}, true, "", "hotadd");
    ASSERT_TRUE(local.ok());
    dev = open_hotadd(**local, image_);
    ASSERT_FALSE(dev.ok());
    EXPECT_NE(dev.error().message.find("local connection"), std::string::npos);
    // Read-write on a snapshot is refused (the chain moves on).
    auto snap = vix::Connection::connect(spec(source_), false, snapshot_, "hotadd");
    ASSERT_TRUE(snap.ok()) << snap.error().message;
    vix::TransportContext ctx{(*snap)->spec(), false, (*snap)->snapshot(), (*snap)->config(),
                              (*snap)->remote()};
    dev = vix::make_transport("hotadd")->open(ctx, kDisk, 0);
    ASSERT_FALSE(dev.ok());
    EXPECT_NE(dev.error().message.find("read-only"), std::string::npos) << dev.error().message;
  }
  EXPECT_TRUE(journal().empty());
}

}  // namespace

namespace {

std::string vixdisk_binary() {
  return VIXFS_VIXDISK;
}

TEST_F(HotaddTransport, CleanupTouchesOnlyEntriesOfDeadProcesses) {
  init(config());
  auto c = client();
  ASSERT_NE(c, nullptr) << error_;
  auto devices = c->devices_of(proxy_);
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  int32_t ctrl = 0;
  std::set<int32_t> used{7};
  for (const auto& d : *devices)
    if (d.is_scsi_controller() && ctrl == 0) ctrl = d.key;
  for (const auto& d : *devices)
    if (d.controller_key == ctrl) used.insert(d.unit);
  std::vector<int32_t> units;
  for (int32_t u = 0; u < 16 && units.size() < 2; ++u)
    if (!used.count(u)) units.push_back(u);
  ASSERT_EQ(units.size(), 2u);

  // Two disks attached as two other processes would have: one still running (this one), one
  // killed before it even read the device key back.
  const std::string server =
      hotadd::server_key(sim_->get("VCSIM_HOST"), std::stoul(sim_->get("VCSIM_PORT")));
  const hotadd::ProcessId dead{static_cast<pid_t>(std::stol(run_ok("sh -c 'echo $$'"))), 42};
  hotadd::Journal j(tmp_);
  hotadd::JournalEntry live_entry, dead_entry;
  int n = 0;
  for (auto [entry, file, owner] : {std::tuple{&live_entry, kDisk, hotadd::self_process()},
                                    std::tuple{&dead_entry, kOtherDisk, dead}}) {
    entry->id = hotadd::new_entry_id();
    entry->server = server;
    entry->proxy = proxy_;
    entry->controller_key = ctrl;
    entry->unit = units[n++];
    entry->file = file;
    entry->owner = owner;
    ASSERT_TRUE(j.add(*entry).ok());
    ASSERT_TRUE(
        c->attach_disk(proxy_, {file, "independent_nonpersistent", ctrl, entry->unit}).ok());
  }
  auto cleaned = vix::cleanup(spec(""));
  ASSERT_TRUE(cleaned.ok()) << cleaned.error().message;
  EXPECT_EQ(cleaned->cleaned_up, 1u);
  EXPECT_EQ(cleaned->remaining, 1u);
  auto now = device_summary(*c);
  EXPECT_TRUE(has_disk(now, kDisk)) << ::testing::PrintToString(now);
  EXPECT_FALSE(has_disk(now, kOtherDisk)) << ::testing::PrintToString(now);
  auto left = journal();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].id, live_entry.id);

  // `vixdisk cleanup` in another process: this test process is alive, its entry stays...
  const std::string vixdisk = vixdisk_binary();
  ASSERT_TRUE(std::filesystem::exists(vixdisk)) << vixdisk << " not built";
  vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  const std::string cmd = sh_quote(vixdisk) + " cleanup --server " +
                          sh_quote(sim_->get("VCSIM_HOST")) + " --port " + sim_->get("VCSIM_PORT") +
                          " --user u --password-file " + sh_quote(dir_.file("pw")) +
                          " --thumbprint " + sh_quote(sim_->get("VCSIM_SHA1")) + " --config " +
                          sh_quote(dir_.file("vixfs.conf")) + " 2>&1";
  auto r = run(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cleaned 0, remaining 1"), std::string::npos) << r.output;
  EXPECT_TRUE(has_disk(device_summary(*c), kDisk));
  // ...until its owner gives it up (what a failed detach does).
  ASSERT_TRUE(j.abandon(live_entry.id).ok());
  r = run(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cleaned 1, remaining 0"), std::string::npos) << r.output;
  EXPECT_TRUE(journal().empty());
  EXPECT_EQ(device_summary(*c), proxy_before_);
}

TEST_F(HotaddTransport, KillNineThenCleanupAtTheNextMount) {
  auto k = kernel();
  vixtest::write_file(dir_.file("pw"), std::string("p\n"));
  vixtest::write_file(dir_.file("vixfs.conf"), config());
  const std::vector<std::string> args = {
      "--server",     sim_->get("VCSIM_URL"),  "--user", "u",   "--password-file", dir_.file("pw"),
      "--thumbprint", sim_->get("VCSIM_SHA1"), "--name", "sim", "--transports",    "hotadd",
      "--config",     dir_.file("vixfs.conf")};
  const std::string mnt = dir_.file("mnt");
  const std::string img = mnt + "/sim/" + source_ + "/current/scsi0-0.img";
  pid_t owner = 0;
  {
    vixtest::VixfsDaemon m(args, mnt, dir_.file("log1"));
    ASSERT_TRUE(m.mounted()) << m.log();
    EXPECT_NE(m.log().find("sim: Cleanup: cleaned 0, remaining 0"), std::string::npos) << m.log();
    const int fd = open(img.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno) << m.log();
    unsigned char byte = 0;
    EXPECT_EQ(pread(fd, &byte, 1, 0), 1) << m.log();
    EXPECT_EQ(byte, 0x5a);
    const std::string json = vixtest::read_text(mnt + "/sim/" + source_ + "/current/snapshot.json");
    EXPECT_NE(json.find("\"transport\": \"hotadd\""), std::string::npos) << json << m.log();
    auto entries = journal();
    ASSERT_EQ(entries.size(), 1u) << m.log();
    owner = entries[0].owner.pid;
    EXPECT_NE(owner, getpid());
    ASSERT_EQ(kill(owner, SIGKILL), 0);
    close(fd);
    m.stop(std::chrono::seconds(10));  // reaps it and lifts the dead mount
  }
  auto c = client();
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(has_disk(device_summary(*c), kDisk)) << "kill -9 left no disk behind?";
  ASSERT_EQ(journal().size(), 1u);

  vixtest::VixfsDaemon m(args, mnt, dir_.file("log2"));
  ASSERT_TRUE(m.mounted()) << m.log();
  EXPECT_NE(m.log().find("sim: Cleanup: cleaned 1, remaining 0"), std::string::npos) << m.log();
  EXPECT_EQ(device_summary(*c), proxy_before_);
  EXPECT_TRUE(journal().empty());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (k->exposed() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(k->exposed(), 0u);
  EXPECT_TRUE(m.stop(std::chrono::seconds(10))) << m.log();
  const std::string log = m.log();
  EXPECT_NE(log.rfind("sim: Cleanup: cleaned 0, remaining 0"), std::string::npos) << log;
}

}  // namespace

namespace {

TEST_F(HotaddTransport, UnitsOtherProcessesJournalledAreTaken) {
  init(config());
  auto k = kernel();
  auto conn = vix::Connection::connect(spec(source_), true, "", "hotadd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  // Where the first attach went when nothing else was pending.
  int32_t ctrl = 0, first_unit = -1;
  {
    auto dev = open_hotadd(**conn);
    ASSERT_TRUE(dev.ok()) << dev.error().message;
    auto entries = journal();
    ASSERT_EQ(entries.size(), 1u);
    ctrl = entries[0].controller_key;
    first_unit = entries[0].unit;
  }
  // Another process is between journalling its attach and the attach itself, on that unit.
  hotadd::Journal j(tmp_);
  hotadd::JournalEntry pending;
  pending.id = hotadd::new_entry_id();
  pending.server = hotadd::server_key(sim_->get("VCSIM_HOST"), std::stoul(sim_->get("VCSIM_PORT")));
  pending.proxy = proxy_;
  pending.controller_key = ctrl;
  pending.unit = first_unit;
  pending.file = "[LocalDS_0] elsewhere/disk.vmdk";
  pending.owner = hotadd::self_process();
  ASSERT_TRUE(j.add(pending).ok());
  {
    auto dev = open_hotadd(**conn);
    ASSERT_TRUE(dev.ok()) << dev.error().message;
    auto entries = journal();
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[1].file, kDisk);
    EXPECT_NE(entries[1].unit, first_unit);
  }
  ASSERT_TRUE(j.remove(pending.id).ok());
  EXPECT_TRUE(journal().empty());
}

}  // namespace
