// Privileges checked before work (issue 19) against the simulator, whose AuthorizationManager
// computes them from the roles and permissions set through the API (tests/vcsim/authz.go): a
// restricted backup role is set up as the administrator, then HasPrivilegeOnEntities answers each
// privilege per entity, the client's table refuses each operation with its own message, and
// DisableMethods without Global.DisableMethods is refused with vCenter's NoPermission.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>

#include "integration/privileges_support.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "support/vsphere_sim.h"
#include "vsphere/method_access.h"
#include "vsphere/privileges.h"

using vixtest::Simulator;

namespace {

namespace vs = vix::vsphere;

class Privileges : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // No -user: any pair logs in, so the admin and the backup user are two logins.
    sim_ = Simulator::start("", false, &error_).release();
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    std::string err;
    admin_ = sim_->login("u", "p", &err);
    ASSERT_NE(admin_, nullptr) << err;
    auto sc = admin_->service_content();
    ASSERT_TRUE(sc.ok()) << sc.error().message;
    root_ = sc->root_folder;
    vm0_ = sim_->get("VCSIM_VM_DC0_H0_VM0");
    vm1_ = sim_->get("VCSIM_VM_DC0_H0_VM1");
    ASSERT_FALSE(vm0_.empty());
    ASSERT_FALSE(vm1_.empty());
  }

  // A user of its own per test, holding `role` on the root folder (propagating).
  std::unique_ptr<vs::Client> restricted(const std::string& user,
                                         const std::vector<std::string>& drop) {
    int32_t role =
        vixtest::add_role(*admin_, "role-" + user, vixtest::backup_privileges_without(drop));
    EXPECT_GE(role, 0);
    vixtest::set_permission(*admin_, "Folder", root_, user, role, true);
    std::string err;
    auto c = sim_->login(user, "secret", &err);
    EXPECT_NE(c, nullptr) << err;
    return c;
  }

  static Simulator* sim_;
  static std::string error_;
  std::unique_ptr<vs::Client> admin_;
  std::string root_, vm0_, vm1_;
};
Simulator* Privileges::sim_ = nullptr;
std::string Privileges::error_;

TEST_F(Privileges, AdministratorWithoutPermissionHoldsEverything) {
  auto t = vs::check_privileges(*admin_, {vm0_, vm1_});
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_TRUE(t->known()) << t->unknown_reason();
  size_t answered = 0;
  for (const auto& [entity, privs] : t->answers()) {
    for (const auto& [id, granted] : privs) {
      EXPECT_TRUE(granted) << id << " on " << entity;
      ++answered;
    }
  }
  EXPECT_GT(answered, 0u);
  for (const std::string& op : vs::privilege_operations()) {
    EXPECT_TRUE(t->missing(op, vm0_).empty()) << op;
  }
  // Still the administrator after other users were given permissions.
  auto c = restricted("someone", {"VirtualMachine.State.CreateSnapshot"});
  ASSERT_NE(c, nullptr);
  auto again = vs::check_privileges(*admin_, {vm0_});
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->missing("snapshot", vm0_).empty());
}

TEST_F(Privileges, RestrictedRoleRefusesEachOperationWithItsOwnMessage) {
  auto c = restricted("backup1", {"VirtualMachine.State.CreateSnapshot", "Global.DisableMethods",
                                  "VirtualMachine.Provisioning.DiskRandomAccess"});
  ASSERT_NE(c, nullptr);
  auto t = vs::check_privileges(*c, {vm0_, vm1_});
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_TRUE(t->known()) << t->unknown_reason();
  EXPECT_EQ(t->root_folder(), root_);

  // HasPrivilegeOnEntities answered per privilege and per entity.
  const auto& a = t->answers();
  ASSERT_TRUE(a.count(vm0_) && a.count(vm1_) && a.count(root_));
  EXPECT_FALSE(a.at(vm0_).at("VirtualMachine.State.CreateSnapshot"));
  EXPECT_TRUE(a.at(vm0_).at("VirtualMachine.State.RemoveSnapshot"));
  EXPECT_TRUE(a.at(vm0_).at("VirtualMachine.Provisioning.DiskRandomRead"));
  EXPECT_FALSE(a.at(vm0_).at("VirtualMachine.Provisioning.DiskRandomAccess"));
  EXPECT_FALSE(a.at(vm0_).at("VirtualMachine.Config.AddExistingDisk"));  // not in the role
  EXPECT_FALSE(a.at(root_).at("Global.DisableMethods"));
  EXPECT_TRUE(a.at(root_).at("Global.EnableMethods"));

  struct Case {
    std::string operation, vm, message;
  };
  for (const Case& c : std::vector<Case>{
           {"snapshot", vm0_,
            "snapshot on " + vm0_ + ": missing privilege VirtualMachine.State.CreateSnapshot on " +
                vm0_},
           {"write", vm1_,
            "write on " + vm1_ +
                ": missing privilege VirtualMachine.Provisioning.DiskRandomAccess "
                "on " +
                vm1_},
           {"disable-methods", vm0_,
            "disable-methods on " + vm0_ + ": missing privilege Global.DisableMethods on " + root_},
       }) {
    auto r = t->check(c.operation, c.vm);
    ASSERT_FALSE(r.ok()) << c.operation;
    EXPECT_EQ(r.error().message, c.message);
  }
  for (const char* op : {"read", "remove-snapshot", "consolidate", "enable-methods", "download",
                         "change-tracking", "license"}) {
    EXPECT_TRUE(t->check(op, vm0_).ok()) << op << ": " << t->check(op, vm0_).error().message;
  }
  EXPECT_NE(t->json(vm0_).find("\"privilege\":\"VirtualMachine.State.CreateSnapshot\""),
            std::string::npos)
      << t->json(vm0_);
}

TEST_F(Privileges, FirstPermissionOnThePathDecides) {
  auto c = restricted("backup2", {"VirtualMachine.State.CreateSnapshot"});
  ASSERT_NE(c, nullptr);
  // Admin on vm1 itself (not propagating: it applies to vm1 all the same) wins over the root's
  // role; vm0 still has only the root's.
  vixtest::set_permission(*admin_, "VirtualMachine", vm1_, "backup2", -1, false);
  auto t = vs::check_privileges(*c, {vm0_, vm1_});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->missing("snapshot", vm0_).size(), 1u);
  EXPECT_TRUE(t->missing("snapshot", vm1_).empty());
  // NoAccess on vm0 takes even what the root's role gives.
  vixtest::set_permission(*admin_, "VirtualMachine", vm0_, "backup2", -5, true);
  t = vs::check_privileges(*c, {vm0_});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->missing("read", vm0_).size(), 1u);
}

TEST_F(Privileges, DisableMethodsWithoutThePrivilegeIsNoPermission) {
  auto c = restricted("backup3", {"Global.DisableMethods"});
  ASSERT_NE(c, nullptr);
  auto r = vs::disable_methods(*c, vm0_, {vs::kRelocateMethod}, "privileges-test");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_AUTHENTICATION_FAIL);
  EXPECT_NE(r.error().message.find("NoPermission"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Permission to perform this operation was denied"),
            std::string::npos)
      << r.error().message;
  auto m = vs::disabled_methods(*admin_, vm0_);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(m->empty());
  // EnableMethods is in the role: allowed. The administrator may do both.
  EXPECT_TRUE(vs::enable_methods(*c, vm0_, {vs::kRelocateMethod}, "privileges-test").ok());
  ASSERT_TRUE(vs::disable_methods(*admin_, vm0_, {vs::kRelocateMethod}, "privileges-test").ok());
  ASSERT_TRUE(vs::enable_methods(*admin_, vm0_, {vs::kRelocateMethod}, "privileges-test").ok());
}

}  // namespace

// The simulator refuses snapshot calls without their privilege (refuseWithoutPrivilege, called
// from the SOAP handler wrapper of consolidate.go), and vixdisk backup checks before it starts.
TEST_F(Privileges, SnapshotCallsWithoutThePrivilegeAreNoPermission) {
  auto c = restricted("backup4", {"VirtualMachine.State.CreateSnapshot"});
  ASSERT_NE(c, nullptr);
  auto s = c->create_snapshot(vm0_, "refused", "privileges-test", false, false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, VIX_E_AUTHENTICATION_FAIL);
  EXPECT_NE(s.error().message.find("NoPermission"), std::string::npos) << s.error().message;
  // The administrator may; the restricted user may remove it (RemoveSnapshot is in the role).
  auto snap = admin_->create_snapshot(vm0_, "allowed", "privileges-test", false, false);
  ASSERT_TRUE(snap.ok()) << snap.error().message;
  EXPECT_TRUE(c->remove_snapshot(*snap, false).ok());
}

TEST_F(Privileges, BackupWithoutThePrivilegeFailsAtOnceNamingIt) {
  auto c = restricted("backup5", {"VirtualMachine.State.CreateSnapshot"});
  ASSERT_NE(c, nullptr);
  vixtest::TempDir dir;
  std::ofstream(dir.file("pw")) << "secret\n";
  vixtest::ChildOptions o;
  o.argv = {VIXFS_VIXDISK,     "backup",
            "DC0_H0_VM0",      dir.file("dest"),
            "--server",        sim_->get("VCSIM_HOST"),
            "--port",          sim_->get("VCSIM_PORT"),
            "--user",          "backup5",
            "--password-file", dir.file("pw"),
            "--thumbprint",    sim_->get("VCSIM_SHA256")};
  o.log = dir.file("backup.log");
  vixtest::Child b(o);
  ASSERT_TRUE(b.wait_exit(std::chrono::minutes(2))) << b.log();
  EXPECT_TRUE(WIFEXITED(b.status()) && WEXITSTATUS(b.status()) == 2) << b.log();
  EXPECT_NE(b.log().find("snapshot on " + vm0_ +
                         ": missing privilege VirtualMachine.State.CreateSnapshot on " + vm0_),
            std::string::npos)
      << b.log();
  auto inv = admin_->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_TRUE(inv->find_vm(vm0_)->snapshots.empty());
}
