// Changed block tracking against the simulator (tests/vcsim/cbt.go, started with -cbt): for every
// pair of points of a sample VM's snapshot chain (older A, newer B, the VM's current state last),
// A's full raw image with B's changed areas since A's changeId copied in from B is B's raw image
// byte for byte (qemu-img is the oracle), whatever the windows the server answers in; changeId
// "*" over zeros gives B; a 4 TiB sparse disk with changes near its end is looped over to the
// end; and the FileFaults (CBT off, reset by switching it off and on or by a revert, a changeId
// from the future) come back with the server's words.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "vsphere/changed_areas.h"
#include "vsphere/client.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;
namespace vs = vix::vsphere;

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kTiB = 1ull << 40;

// One point of a VM's history: a snapshot ("" for the VM's current state) and its first disk.
struct Point {
  std::string snapshot;
  std::string name;
  vs::VirtualDisk disk;
};

class Cbt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sim_ = Simulator::start_with_samples(dir_->file("samples"), 32, "-user u:p -cbt", &error_)
               .release();
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
    client_ = sim_->login("u", "p", &err);
    ASSERT_NE(client_, nullptr) << err;
    control("cbt-max-areas", "");
    control("cbt-window", "");
  }

  // Writes (or, with "", removes) a switch of the simulator's control folder.
  static void control(const std::string& name, const std::string& value) {
    const std::string path = sim_->get("VCSIM_CONTROL") + "/" + name;
    if (value.empty()) {
      fs::remove(path);
    } else {
      vixtest::write_file(path, value + "\n");
    }
  }

  vs::VirtualMachine vm_named(const std::string& name) {
    auto inv = client_->inventory();
    EXPECT_TRUE(inv.ok()) << inv.error().message;
    if (inv.ok()) {
      for (const vs::VirtualMachine& vm : inv->vms) {
        if (vm.name == name) return vm;
      }
    }
    ADD_FAILURE() << "no VM named " << name;
    return {};
  }

  // The VM's snapshots in creation order, then its current state.
  std::vector<Point> points(const vs::VirtualMachine& vm) {
    std::vector<Point> out;
    std::vector<const vs::Snapshot*> snaps = vs::flatten(vm.snapshots);
    std::sort(snaps.begin(), snaps.end(),
              [](const vs::Snapshot* a, const vs::Snapshot* b) { return a->id < b->id; });
    for (const vs::Snapshot* s : snaps) {
      EXPECT_FALSE(s->disks.empty()) << s->moref;
      if (!s->disks.empty()) out.push_back({s->moref, s->name, s->disks[0]});
    }
    EXPECT_FALSE(vm.disks.empty()) << vm.moref;
    if (!vm.disks.empty()) out.push_back({"", "current", vm.disks[0]});
    return out;
  }

  static std::string local(const std::string& datastore_path) {
    auto p = vs::parse_datastore_path(datastore_path);
    EXPECT_TRUE(p.has_value()) << datastore_path;
    if (!p) return {};
    return sim_->get("VCSIM_DS_" + p->datastore) + "/" + p->path;
  }

  // For every pair (A older, B newer): raw(A) + B's areas since A's changeId == raw(B); and
  // raw(B) == zeros + B's areas of "*". Returns the number of pairs checked.
  int check_pairs(const std::string& vm_name) {
    vs::VirtualMachine vm = vm_named(vm_name);
    EXPECT_TRUE(vm.cbt_enabled) << vm_name;
    std::vector<Point> pts = points(vm);
    std::vector<std::vector<uint8_t>> raws;
    for (const Point& p : pts) {
      EXPECT_FALSE(p.disk.change_id.empty()) << vm_name << " " << p.name;
      raws.push_back(vixtest::qemu_raw(local(p.disk.file_name())));
      EXPECT_EQ(raws.back().size(), p.disk.capacity_bytes) << p.name;
    }
    int pairs = 0;
    for (size_t b = 0; b < pts.size(); ++b) {
      const Point& B = pts[b];
      auto all = vs::query_changed_areas(*client_, vm.moref, B.snapshot, B.disk.key,
                                         B.disk.capacity_bytes, "*");
      EXPECT_TRUE(all.ok()) << all.error().message;
      if (all.ok()) {
        std::vector<uint8_t> image(raws[b].size(), 0);
        for (const vs::ChangedArea& a : *all) {
          std::memcpy(image.data() + a.start, raws[b].data() + a.start, a.length);
        }
        EXPECT_TRUE(image == raws[b]) << vm_name << ": zeros + \"*\" areas differ from " << B.name;
      }
      for (size_t a = 0; a < b; ++a) {
        const Point& A = pts[a];
        SCOPED_TRACE(vm_name + ": " + A.name + " (" + A.disk.change_id + ") -> " + B.name);
        auto areas = vs::query_changed_areas(*client_, vm.moref, B.snapshot, B.disk.key,
                                             B.disk.capacity_bytes, A.disk.change_id);
        EXPECT_TRUE(areas.ok()) << areas.error().message;
        if (!areas.ok()) continue;
        uint64_t changed = 0;
        std::vector<uint8_t> image = raws[a];
        for (const vs::ChangedArea& x : *areas) {
          if (x.start + x.length > image.size()) {
            ADD_FAILURE() << "area past the image: " << x.start << "+" << x.length;
            return pairs;
          }
          std::memcpy(image.data() + x.start, raws[b].data() + x.start, x.length);
          changed += x.length;
        }
        EXPECT_TRUE(image == raws[b]) << "older image + changed areas differ from the newer";
        // An incremental, not a full copy: the samples change a few grains between points.
        EXPECT_GT(changed, 0u);
        EXPECT_LT(changed, B.disk.capacity_bytes / 4);
        ++pairs;
      }
    }
    return pairs;
  }

  static void reconfigure(vs::Client* c, const std::string& vm, const std::string& spec) {
    auto r = c->call("ReconfigVM_Task", {"VirtualMachine", vm}, "<spec>" + spec + "</spec>");
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto done = c->wait_for_task(r->body.child("returnval").text().as_string());
    ASSERT_TRUE(done.ok()) << done.error().message;
  }

  // Points the VM's first disk at `file` (and its parents) in its folder, `capacity` bytes.
  void point_disk_at(const vs::VirtualMachine& vm, const std::vector<std::string>& chain,
                     uint64_t capacity) {
    ASSERT_FALSE(vm.disks.empty());
    const vs::VirtualDisk& d = vm.disks[0];
    auto ds = vs::parse_datastore_path(d.file_name());
    ASSERT_TRUE(ds.has_value());
    const std::string prefix = "[" + ds->datastore + "] " + vm.name + "/";
    std::string backing;
    for (size_t i = chain.size(); i-- > 0;) {
      const std::string inner = backing.empty() ? "" : "<parent>" + backing + "</parent>";
      backing =
          "<fileName>" + prefix + chain[i] + "</fileName><diskMode>persistent</diskMode>" + inner;
    }
    reconfigure(client_.get(), vm.moref,
                "<deviceChange><operation>edit</operation><device xsi:type=\"VirtualDisk\"><key>" +
                    std::to_string(d.key) + "</key><deviceInfo><label>" + d.label +
                    "</label><summary>disk</summary></deviceInfo><backing "
                    "xsi:type=\"VirtualDiskFlatVer2BackingInfo\">" +
                    backing + "</backing><controllerKey>" + std::to_string(d.controller_key) +
                    "</controllerKey><unitNumber>" + std::to_string(d.unit) +
                    "</unitNumber><capacityInBytes>" + std::to_string(capacity) +
                    "</capacityInBytes><capacityInKB>" + std::to_string(capacity / 1024) +
                    "</capacityInKB></device></deviceChange>");
  }

  static TempDir* dir_;
  static Simulator* sim_;
  static std::string error_;
  std::unique_ptr<vs::Client> client_;
};

TempDir* Cbt::dir_ = nullptr;
Simulator* Cbt::sim_ = nullptr;
std::string Cbt::error_;

TEST_F(Cbt, EveryPairOfPointsRebuildsTheNewerDisk) {
  // DC0_C0_RP0_VMFS6: a flat base and SEsparse deltas (vmfs6-1, vmfs6-2, current): 3 pairs.
  EXPECT_EQ(check_pairs("DC0_C0_RP0_VMFS6"), 3);
  // DC0_H0_VM0: hosted sparse base and child (before-upgrade, current): 1 pair.
  EXPECT_EQ(check_pairs("DC0_H0_VM0"), 1);
}

TEST_F(Cbt, OneAreaPerReplyAndSmallWindowsGiveTheSameAnswer) {
  control("cbt-max-areas", "1");
  EXPECT_EQ(check_pairs("DC0_C0_RP0_VMFS6"), 3);
  control("cbt-max-areas", "");
  control("cbt-window", std::to_string(192 << 10));  // 171 windows over 32 MiB, most empty
  EXPECT_EQ(check_pairs("DC0_C0_RP0_VMFS6"), 3);
  control("cbt-max-areas", "2");
  EXPECT_EQ(check_pairs("DC0_H0_VM0"), 1);
}

TEST_F(Cbt, FourTerabyteDiskIsLoopedToItsEnd) {
  // DC0_C0_RP0_VM1 gets a 4 TiB hosted sparse base with data near its end, a snapshot, a child
  // with changes past 2 TiB and near the end, and a second snapshot.
  vs::VirtualMachine vm = vm_named("DC0_C0_RP0_VM1");
  ASSERT_FALSE(vm.moref.empty());
  const std::string folder = fs::path(local(vm.disks.at(0).file_name())).parent_path();
  for (const auto& e : fs::directory_iterator(folder)) {
    if (e.path().extension() == ".vmdk") fs::remove(e.path());
  }
  const uint64_t cap = 4 * kTiB;
  const std::string base = folder + "/big.vmdk", child = folder + "/big-000001.vmdk";
  run_ok("qemu-img create -q -f vmdk " + sh_quote(base) + " 4T");
  run_ok("qemu-io -f vmdk -c 'write -q -P 0x11 0 64k' -c 'write -q -P 0x12 " +
         std::to_string(cap - kTiB / 2) + " 64k' " + sh_quote(base));
  for (const char* f : {"big-flat.vmdk", "big-000001-flat.vmdk"}) {
    vixtest::write_file(folder + "/" + std::string(f),
                        std::string());  // the simulator checks -flat names
  }
  point_disk_at(vm, {"big.vmdk"}, cap);
  std::string err;
  const std::string s1 = sim_->snapshot("u", "p", vm.moref, "big-1", "", &err);
  ASSERT_FALSE(s1.empty()) << err;
  run_ok("qemu-img create -q -f vmdk -b big.vmdk -F vmdk " + sh_quote(child));
  // 2 TiB + 4 KiB (rounded out to its 64 KiB grain), 3 TiB (128 KiB), the last 64 KiB.
  run_ok("qemu-io -f vmdk -c 'write -q -P 0x21 " + std::to_string(2 * kTiB + 4096) +
         " 4k' -c 'write -q -P 0x22 " + std::to_string(3 * kTiB) + " 128k' -c 'write -q -P 0x23 " +
         std::to_string(cap - 65536) + " 64k' " + sh_quote(child));
  point_disk_at(vm_named("DC0_C0_RP0_VM1"), {"big-000001.vmdk", "big.vmdk"}, cap);
  const std::string s2 = sim_->snapshot("u", "p", vm.moref, "big-2", "", &err);
  ASSERT_FALSE(s2.empty()) << err;

  vm = vm_named("DC0_C0_RP0_VM1");
  const vs::Snapshot* first = vs::find_snapshot(vm.snapshots, s1);
  const vs::Snapshot* second = vs::find_snapshot(vm.snapshots, s2);
  ASSERT_TRUE(first && second && !first->disks.empty() && !second->disks.empty());
  const vs::VirtualDisk& d1 = first->disks[0];
  const vs::VirtualDisk& d2 = second->disks[0];
  EXPECT_EQ(d2.capacity_bytes, cap);
  EXPECT_NE(d1.change_id, d2.change_id);

  const std::vector<vs::ChangedArea> since_first{
      {2 * kTiB, 65536}, {3 * kTiB, 131072}, {cap - 65536, 65536}};
  const std::vector<vs::ChangedArea> everything{{0, 65536},
                                                {2 * kTiB, 65536},
                                                {3 * kTiB, 131072},
                                                {cap - kTiB / 2, 65536},
                                                {cap - 65536, 65536}};
  for (const char* window : {"", "274877906944" /* 256 GiB: 16 windows, most empty */}) {
    SCOPED_TRACE(std::string("window ") + window);
    control("cbt-window", window);
    for (const char* max_areas : {"", "1"}) {
      SCOPED_TRACE(std::string("max areas ") + max_areas);
      control("cbt-max-areas", max_areas);
      auto r = vs::query_changed_areas(*client_, vm.moref, s2, d2.key, cap, d1.change_id);
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(*r, since_first);
      auto all = vs::query_changed_areas(*client_, vm.moref, s2, d2.key, cap, "*");
      ASSERT_TRUE(all.ok()) << all.error().message;
      EXPECT_EQ(*all, everything);
    }
  }
}

TEST_F(Cbt, FileFaultsCarryTheServersWords) {
  vs::VirtualMachine vmfs6 = vm_named("DC0_C0_RP0_VMFS6");
  std::vector<Point> pts = points(vmfs6);
  ASSERT_EQ(pts.size(), 3u);
  const Point &older = pts[0], &newer = pts[1];
  const uint64_t cap = older.disk.capacity_bytes;

  // A changeId newer than the state asked about.
  auto future = vs::query_changed_areas(*client_, vmfs6.moref, older.snapshot, older.disk.key, cap,
                                        newer.disk.change_id);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(future.error().code, VIX_E_FILE_ERROR);
  EXPECT_NE(future.error().message.find("FileFault"), std::string::npos);
  EXPECT_NE(future.error().message.find("is newer than the queried state"), std::string::npos)
      << future.error().message;

  // No such disk.
  auto nokey = vs::query_changed_areas(*client_, vmfs6.moref, older.snapshot, 12345, cap, "*");
  ASSERT_FALSE(nokey.ok());
  EXPECT_NE(nokey.error().message.find("NotFound"), std::string::npos) << nokey.error().message;
  EXPECT_NE(nokey.error().message.find("no virtual disk with key 12345"), std::string::npos)
      << nokey.error().message;

  // CBT off: FileFault; the inventory says it is off and the live disk has no changeId.
  vs::VirtualMachine vm = vm_named("DC0_H0_VM1");
  std::vector<Point> vm_pts = points(vm);
  ASSERT_EQ(vm_pts.size(), 2u);  // "nightly", current
  const Point nightly = vm_pts[0];
  ASSERT_FALSE(nightly.disk.change_id.empty());
  reconfigure(client_.get(), vm.moref, "<changeTrackingEnabled>false</changeTrackingEnabled>");
  vm = vm_named("DC0_H0_VM1");
  EXPECT_FALSE(vm.cbt_enabled);
  EXPECT_EQ(vm.disks.at(0).change_id, "");
  auto off = vs::query_changed_areas(*client_, vm.moref, nightly.snapshot, nightly.disk.key,
                                     nightly.disk.capacity_bytes, "*");
  ASSERT_FALSE(off.ok());
  EXPECT_EQ(off.error().code, VIX_E_FILE_ERROR);
  EXPECT_NE(off.error().message.find("change tracking is not enabled"), std::string::npos)
      << off.error().message;

  // A snapshot taken while CBT is off has no changeId, and stays without one.
  std::string err;
  const std::string untracked = sim_->snapshot("u", "p", vm.moref, "untracked", "", &err);
  ASSERT_FALSE(untracked.empty()) << err;

  // On again: a reset. The snapshot's old changeId, and the snapshot itself, are refused.
  reconfigure(client_.get(), vm.moref, "<changeTrackingEnabled>true</changeTrackingEnabled>");
  {
    vs::VirtualMachine now = vm_named("DC0_H0_VM1");
    const vs::Snapshot* u = vs::find_snapshot(now.snapshots, untracked);
    ASSERT_TRUE(u != nullptr && !u->disks.empty());
    EXPECT_EQ(u->disks[0].change_id, "");
    auto none = vs::query_changed_areas(*client_, now.moref, untracked, u->disks[0].key,
                                        u->disks[0].capacity_bytes, "*");
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().code, VIX_E_FILE_ERROR);
    EXPECT_NE(none.error().message.find("taken while change tracking was off"), std::string::npos)
        << none.error().message;
  }
  vm = vm_named("DC0_H0_VM1");
  EXPECT_TRUE(vm.cbt_enabled);
  const vs::VirtualDisk live = vm.disks.at(0);
  ASSERT_FALSE(live.change_id.empty());
  EXPECT_NE(live.change_id.substr(0, live.change_id.find('/')),
            nightly.disk.change_id.substr(0, nightly.disk.change_id.find('/')));
  auto reset = vs::query_changed_areas(*client_, vm.moref, "", live.key, live.capacity_bytes,
                                       nightly.disk.change_id);
  ASSERT_FALSE(reset.ok());
  EXPECT_EQ(reset.error().code, VIX_E_FILE_ERROR);
  EXPECT_NE(reset.error().message.find("from before a change tracking reset"), std::string::npos)
      << reset.error().message;
  auto stale = vs::query_changed_areas(*client_, vm.moref, nightly.snapshot, nightly.disk.key,
                                       nightly.disk.capacity_bytes, "*");
  ASSERT_FALSE(stale.ok());
  EXPECT_NE(stale.error().message.find("change tracking was reset"), std::string::npos)
      << stale.error().message;
  // The live disk since its own changeId: answered (the live top link, conservatively).
  auto since_live = vs::query_changed_areas(*client_, vm.moref, "", live.key, live.capacity_bytes,
                                            live.change_id);
  EXPECT_TRUE(since_live.ok()) << since_live.error().message;

  // A revert invalidates the changeIds too.
  auto rv =
      client_->call("RevertToSnapshot_Task", {"VirtualMachineSnapshot", nightly.snapshot}, "");
  ASSERT_TRUE(rv.ok()) << rv.error().message;
  auto reverted = client_->wait_for_task(rv->body.child("returnval").text().as_string());
  ASSERT_TRUE(reverted.ok()) << reverted.error().message;
  vm = vm_named("DC0_H0_VM1");
  ASSERT_FALSE(vm.disks.at(0).change_id.empty());
  EXPECT_NE(vm.disks.at(0).change_id.substr(0, vm.disks.at(0).change_id.find('/')),
            live.change_id.substr(0, live.change_id.find('/')));
  auto after_revert = vs::query_changed_areas(*client_, vm.moref, "", live.key, live.capacity_bytes,
                                              live.change_id);
  ASSERT_FALSE(after_revert.ok());
  EXPECT_NE(after_revert.error().message.find("from before a change tracking reset"),
            std::string::npos)
      << after_revert.error().message;
}

}  // namespace
