// The vSphere client's inventory and tasks against a real vcsim (VPX model).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vix::vsphere::Client;
using vix::vsphere::ConnectOptions;
using vix::vsphere::Inventory;
using vixtest::Simulator;

namespace {

class VsphereInventory : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sim_ = Simulator::start("", true, &error_).release(); }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ConnectOptions o;
    o.url = sim_->get("VCSIM_URL");
    o.thumbprint = sim_->get("VCSIM_SHA256");
    o.connect_timeout_ms = 5000;
    o.timeout_ms = 30000;
    auto c = Client::connect(o);
    ASSERT_TRUE(c.ok()) << c.error().message;
    client_ = std::move(c).value();
    auto r = client_->login("administrator@vsphere.local", "pass");
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  void TearDown() override {
    if (client_) {
      EXPECT_TRUE(client_->logout().ok());
    }
  }

  static Simulator* sim_;
  static std::string error_;
  std::unique_ptr<Client> client_;
};
Simulator* VsphereInventory::sim_ = nullptr;
std::string VsphereInventory::error_;

TEST_F(VsphereInventory, MatchesWhatTheSimulatorPrinted) {
  auto inv = client_->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;

  std::map<std::string, std::string> expected_vms;  // moRef -> name
  std::map<std::string, std::string> expected_hosts;
  for (const auto& [k, v] : sim_->vars()) {
    if (k.rfind("VCSIM_VM_", 0) == 0) expected_vms[v] = k.substr(9);
    if (k.rfind("VCSIM_HOSTSYSTEM_", 0) == 0) expected_hosts[v] = k.substr(17);
  }
  ASSERT_FALSE(expected_vms.empty());
  std::map<std::string, std::string> got_vms;
  for (const auto& vm : inv->vms) {
    got_vms[vm.moref] = vm.name;
    EXPECT_EQ(vm.uuid.size(), 36u) << vm.name;
    EXPECT_TRUE(vm.power_state == "poweredOn" || vm.power_state == "poweredOff") << vm.name;
    EXPECT_TRUE(expected_hosts.count(vm.host)) << vm.name << " on " << vm.host;
    ASSERT_EQ(vm.disks.size(), 1u) << vm.name;
    const auto& d = vm.disks[0];
    EXPECT_EQ(d.file_name(), "[LocalDS_0] " + vm.name + "/disk1.vmdk");
    EXPECT_EQ(d.controller_kind, "scsi");
    EXPECT_EQ(d.slot_name(), "scsi0-0");
    EXPECT_EQ(d.capacity_bytes, 1024u * 1024u);
    EXPECT_EQ(d.chain.size(), 1u);
    EXPECT_EQ(d.chain[0].disk_mode, "persistent");
    EXPECT_EQ(d.chain[0].datastore, sim_->get("VCSIM_DSREF_LocalDS_0"));
    // The datastore path names a file in the folder the simulator printed.
    EXPECT_TRUE(std::ifstream(sim_->get("VCSIM_DS_LocalDS_0") + "/" + vm.name + "/disk1.vmdk"))
        << vm.name;
  }
  EXPECT_EQ(got_vms, expected_vms);

  std::map<std::string, std::string> got_hosts;
  for (const auto& h : inv->hosts) got_hosts[h.moref] = h.name;
  EXPECT_EQ(got_hosts, expected_hosts);

  ASSERT_EQ(inv->datacenters.size(), 1u);
  EXPECT_EQ(inv->datacenters[0].name, sim_->get("VCSIM_DC"));
  EXPECT_EQ(inv->datacenters[0].path, sim_->get("VCSIM_DC"));
  const auto* ds = inv->find_datastore_by_name("LocalDS_0");
  ASSERT_NE(ds, nullptr);
  EXPECT_EQ(ds->moref, sim_->get("VCSIM_DSREF_LocalDS_0"));
  EXPECT_EQ(ds->url, sim_->get("VCSIM_DS_LocalDS_0"));
  EXPECT_EQ(ds->datacenter, inv->datacenters[0].moref);
}

TEST_F(VsphereInventory, SnapshotsCreatedThroughTheApiAppearInTheTree) {
  std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
  ASSERT_FALSE(vm.empty());
  std::time_t before = std::time(nullptr);
  auto s1 = client_->create_snapshot(vm, "backup <1> & co", "first \"one\"", false, false);
  ASSERT_TRUE(s1.ok()) << s1.error().message;
  auto s2 = client_->create_snapshot(vm, "backup-2", "", false, false);
  ASSERT_TRUE(s2.ok()) << s2.error().message;

  auto inv = client_->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  const auto* v = inv->find_vm(vm);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->current_snapshot, *s2);
  // Found by moRef: a shared simulator ($VIXFS_VCSIM_ENV) may hold other snapshots too.
  const auto* found = vix::vsphere::find_snapshot(v->snapshots, *s1);
  ASSERT_NE(found, nullptr);
  const auto& root = *found;
  EXPECT_EQ(root.name, "backup <1> & co");
  EXPECT_EQ(root.description, "first \"one\"");
  EXPECT_FALSE(root.quiesced);
  EXPECT_GE(root.create_time_ns / 1000000000, before - 5);
  EXPECT_LE(root.create_time_ns / 1000000000, std::time(nullptr) + 5);
  ASSERT_EQ(root.children.size(), 1u);
  EXPECT_EQ(root.children[0].moref, *s2);
  ASSERT_EQ(root.disks.size(), 1u);
  EXPECT_EQ(root.disks[0].file_name(), "[LocalDS_0] DC0_H0_VM0/disk1.vmdk");
  EXPECT_EQ(root.disks[0].slot_name(), "scsi0-0");
  EXPECT_EQ(root.children[0].disks.size(), 1u);

  auto disks = client_->disks_of({"VirtualMachineSnapshot", *s2});
  ASSERT_TRUE(disks.ok()) << disks.error().message;
  EXPECT_EQ(disks->size(), 1u);

  ASSERT_TRUE(client_->remove_snapshot(*s1, true).ok());
  auto after = client_->inventory();
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(vix::vsphere::find_snapshot(after->find_vm(vm)->snapshots, *s1), nullptr);
  EXPECT_EQ(vix::vsphere::find_snapshot(after->find_vm(vm)->snapshots, *s2), nullptr);
  auto gone = client_->disks_of({"VirtualMachineSnapshot", *s1});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, VIX_E_OBJECT_NOT_FOUND) << gone.error().message;
}

TEST_F(VsphereInventory, UnknownObjectIsNotFoundWithTheFaultType) {
  auto r = client_->disks_of({"VirtualMachine", "vm-9999"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_OBJECT_NOT_FOUND);
  EXPECT_NE(r.error().message.find("ManagedObjectNotFound"), std::string::npos)
      << r.error().message;
  auto t = client_->create_snapshot("vm-9999", "x", "", false, false);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, VIX_E_OBJECT_NOT_FOUND) << t.error().message;
}

TEST_F(VsphereInventory, ConcurrentCallsShareOneClient) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 3; ++j) {
        auto inv = client_->inventory();
        if (inv.ok() && inv->vms.size() == 4) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 12);
}

TEST_F(VsphereInventory, DatastoreFileUrlServesTheFile) {
  std::string dir = sim_->get("VCSIM_DS_LocalDS_0") + "/url test";
  vixtest::run_ok("mkdir -p " + vixtest::sh_quote(dir));
  vixtest::write_file(dir + "/a&b.txt", std::string("HELLO-FROM-VCSIM"));
  std::string url =
      vix::vsphere::datastore_file_url(client_->endpoint(), "DC0", "LocalDS_0", "url test/a&b.txt");
  EXPECT_NE(url.find("/folder/url%20test/a%26b.txt?dcPath=DC0&dsName=LocalDS_0"), std::string::npos)
      << url;
  std::string out = vixtest::run_ok(
      "curl -sS --fail --cacert " + vixtest::sh_quote(sim_->get("VCSIM_CERT")) + " -b " +
      vixtest::sh_quote("vmware_soap_session=" + client_->session_cookie()) + " " +
      vixtest::sh_quote(url));
  EXPECT_EQ(out, "HELLO-FROM-VCSIM");
  vixtest::run("rm -rf " + vixtest::sh_quote(dir));
}

// Counts the SOAP requests that reach the wire.
class CountingTransport : public vix::vsphere::Transport {
 public:
  explicit CountingTransport(std::unique_ptr<vix::vsphere::Transport> inner)
      : inner_(std::move(inner)) {}
  vix::Result<vix::vsphere::HttpReply> post(std::string_view action,
                                            const std::string& body) override {
    ++posts;
    return inner_->post(action, body);
  }
  std::string cookie() const override { return inner_->cookie(); }
  void set_cookie(std::string v) override { inner_->set_cookie(std::move(v)); }
  std::string endpoint() const override { return inner_->endpoint(); }
  std::atomic<int> posts{0};

 private:
  std::unique_ptr<vix::vsphere::Transport> inner_;
};

TEST_F(VsphereInventory, RoundTripsDoNotGrowWithTheInventory) {
  ConnectOptions o;
  o.url = sim_->get("VCSIM_URL");
  o.thumbprint = sim_->get("VCSIM_SHA1");
  auto inner = vix::vsphere::make_curl_transport(o);
  ASSERT_TRUE(inner.ok()) << inner.error().message;
  auto counting = std::make_unique<CountingTransport>(std::move(inner).value());
  CountingTransport* counter = counting.get();
  Client c(std::move(counting));
  ASSERT_TRUE(c.login("u", "p").ok());

  auto trips = [&]() {
    int before = counter->posts;
    auto inv = c.inventory();
    EXPECT_TRUE(inv.ok()) << inv.error().message;
    return counter->posts - before;
  };
  std::vector<std::string> made;
  auto one = c.create_snapshot(sim_->get("VCSIM_VM_DC0_H0_VM1"), "rt-1", "", false, false);
  ASSERT_TRUE(one.ok()) << one.error().message;
  made.push_back(*one);
  int with_one = trips();
  for (const char* vm :
       {"VCSIM_VM_DC0_H0_VM1", "VCSIM_VM_DC0_C0_RP0_VM0", "VCSIM_VM_DC0_C0_RP0_VM1"}) {
    for (int i = 0; i < 2; ++i) {
      auto s = c.create_snapshot(sim_->get(vm), "rt", "", false, false);
      ASSERT_TRUE(s.ok()) << s.error().message;
      made.push_back(*s);
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  int with_seven = trips();
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  // CreateContainerView, RetrievePropertiesEx, DestroyView, RetrievePropertiesEx (snapshot disks).
  EXPECT_EQ(with_one, 4);
  EXPECT_EQ(with_seven, 4);
  std::cout << "inventory with 7 snapshots: " << with_seven << " requests, " << ms << " ms\n";
  for (auto it = made.rbegin(); it != made.rend(); ++it) {
    EXPECT_TRUE(c.remove_snapshot(*it, false).ok());
  }
  EXPECT_TRUE(c.logout().ok());
}

}  // namespace
