// vixdisk cbt status|enable|disable against the simulator (whose CBT assigns changeIds while a
// VM's changeTrackingEnabled is on, tests/vcsim/cbt.go): the setting and the disks' changeIds as
// vSphere reports them, the stun leaving no snapshot, and a user without
// VirtualMachine.Config.ChangeTracking refused before anything changes.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "privileges_support.h"
#include "support/fixtures.h"
#include "support/server_leftovers.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vixtest::run;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

class VixdiskCbt : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    // Without -user any pair logs in; a user no permission names holds every privilege.
    sim_ = Simulator::start("", false, &error);
    ASSERT_NE(sim_, nullptr) << error;
    admin_ = sim_->login("admin", "p", &error);
    ASSERT_NE(admin_, nullptr) << error;
    vm_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    std::ofstream(dir_.file("pw")) << "p\n";
  }
  vixtest::CommandResult cbt(const std::string& user, const std::string& action,
                             const std::string& more = "") {
    return run(std::string(VIXFS_VIXDISK) + " cbt " + action + " " + vm_ + " --server " +
               sim_->get("VCSIM_HOST") + " --port " + sim_->get("VCSIM_PORT") + " --user " + user +
               " --password-file " + sh_quote(dir_.file("pw")) + " --thumbprint " +
               sim_->get("VCSIM_SHA256") + " " + more + " 2>&1");
  }
  bool cbt_on() {
    auto inv = admin_->inventory();
    EXPECT_TRUE(inv.ok() && inv->find_vm(vm_));
    return inv.ok() && inv->find_vm(vm_) && inv->find_vm(vm_)->cbt_enabled;
  }

  TempDir dir_;
  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<vix::vsphere::Client> admin_;
  std::string vm_;
};

TEST_F(VixdiskCbt, EnableAndDisableShowTheSettingAndTheChangeIds) {
  auto r = cbt("u", "status", "--json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"changeTracking\": false"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\"changeId\": null"), std::string::npos) << r.output;

  r = cbt("u", "enable");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(" + vm_ + "): change tracking on"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("changeId -"), std::string::npos) << "a disk without a changeId";
  EXPECT_TRUE(cbt_on());
  EXPECT_TRUE(vixtest::tool_snapshots(*admin_).empty()) << "the stun's snapshot stayed";
  auto inv = admin_->inventory();
  ASSERT_TRUE(inv.ok());
  ASSERT_FALSE(inv->find_vm(vm_)->disks.empty());
  const std::string change_id = inv->find_vm(vm_)->disks[0].change_id;
  EXPECT_FALSE(change_id.empty());
  EXPECT_NE(r.output.find("changeId " + change_id), std::string::npos) << r.output;

  r = cbt("u", "disable", "--json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"changeTracking\": false"), std::string::npos) << r.output;
  EXPECT_FALSE(cbt_on());
  EXPECT_TRUE(vixtest::tool_snapshots(*admin_).empty());
}

TEST_F(VixdiskCbt, WithoutTheChangeTrackingPrivilegeNothingChanges) {
  auto sc = admin_->service_content();
  ASSERT_TRUE(sc.ok()) << sc.error().message;
  const int32_t role = vixtest::add_role(
      *admin_, "no-cbt",
      vixtest::backup_privileges_without({"VirtualMachine.Config.ChangeTracking"}));
  ASSERT_GT(role, 0);
  vixtest::set_permission(*admin_, "Folder", sc->root_folder, "backup", role, true);
  auto r = cbt("backup", "enable");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("change-tracking on " + vm_ +
                          ": missing privilege VirtualMachine.Config.ChangeTracking on " + vm_),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(cbt_on());
  EXPECT_EQ(cbt("backup", "status").exit_code, 0) << "status needs no privilege to change";
}

TEST_F(VixdiskCbt, BadActionIsAUsageError) {
  auto r = cbt("u", "toggle");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cbt toggle: status, enable or disable"), std::string::npos) << r.output;
}

}  // namespace
