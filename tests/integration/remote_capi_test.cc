// The C ABI of the built libvixDiskLib.so (dlopen()ed as VDDK clients do) on a remote connection
// to vcsim: ConnectEx with user/password, thumbprint and vmxSpec, Open by datastore path through
// https, GetTransportMode, Read against qemu-img, GetConnectParams, Disconnect.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <filesystem>

#include "support/fixtures.h"
#include "support/vsphere_sim.h"
#include "vixDiskLib.h"
#include "vsphere/client.h"
#include "vsphere/method_access.h"

using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;

namespace {

struct Api {
  decltype(&VixDiskLib_InitEx) InitEx;
  decltype(&VixDiskLib_Exit) Exit;
  decltype(&VixDiskLib_ConnectEx) ConnectEx;
  decltype(&VixDiskLib_Disconnect) Disconnect;
  decltype(&VixDiskLib_Open) Open;
  decltype(&VixDiskLib_Close) Close;
  decltype(&VixDiskLib_GetInfo) GetInfo;
  decltype(&VixDiskLib_FreeInfo) FreeInfo;
  decltype(&VixDiskLib_Read) Read;
  decltype(&VixDiskLib_GetTransportMode) GetTransportMode;
  decltype(&VixDiskLib_GetConnectParams) GetConnectParams;
  decltype(&VixDiskLib_FreeConnectParams) FreeConnectParams;
  decltype(&VixDiskLib_PrepareForAccess) PrepareForAccess;
  decltype(&VixDiskLib_EndAccess) EndAccess;
};

// The .so of this build tree: <build>/vddk/lib64, two levels above this binary's folder.
std::string library_path() {
  char self[PATH_MAX] = {0};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  auto build =
      std::filesystem::path(std::string(self, n)).parent_path().parent_path().parent_path();
  return (build / "vddk/lib64/libvixDiskLib.so.8").string();
}

class RemoteCapi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = Simulator::start("-user u:p", false, &error_).release();
    if (sim_ == nullptr) return;
    disk_ = sim_->get("VCSIM_DS_LocalDS_0") + "/DC0_H0_VM0/disk1.vmdk";
    std::filesystem::create_directories(std::filesystem::path(disk_).parent_path());
    std::filesystem::remove(disk_);
    run_ok("qemu-img create -q -f vmdk " + sh_quote(disk_) + " 6M");
    run_ok("qemu-io -f vmdk -c 'write -P 0x3c 1536 3M' " + sh_quote(disk_));
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    const std::string lib = library_path();
    dl_ = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(dl_, nullptr) << dlerror();
#define VIXTEST_SYM(name)                                                             \
  api_.name = reinterpret_cast<decltype(api_.name)>(dlsym(dl_, "VixDiskLib_" #name)); \
  ASSERT_NE(api_.name, nullptr) << #name;
    VIXTEST_SYM(InitEx)
    VIXTEST_SYM(Exit)
    VIXTEST_SYM(ConnectEx)
    VIXTEST_SYM(Disconnect)
    VIXTEST_SYM(Open)
    VIXTEST_SYM(Close)
    VIXTEST_SYM(GetInfo)
    VIXTEST_SYM(FreeInfo)
    VIXTEST_SYM(Read)
    VIXTEST_SYM(GetTransportMode)
    VIXTEST_SYM(GetConnectParams)
    VIXTEST_SYM(FreeConnectParams)
    VIXTEST_SYM(PrepareForAccess)
    VIXTEST_SYM(EndAccess)
#undef VIXTEST_SYM
    ASSERT_EQ(api_.InitEx(7, 0, nullptr, nullptr, nullptr, nullptr, nullptr), VIX_OK);
  }
  void TearDown() override {
    if (api_.Exit) api_.Exit();
    if (dl_) dlclose(dl_);
  }

  VixDiskLibConnectParams params(const char* password) {
    host_ = sim_->get("VCSIM_HOST");
    thumb_ = sim_->get("VCSIM_SHA1");
    vmx_ = "moref=" + sim_->get("VCSIM_VM_DC0_H0_VM0");
    pw_ = password;
    VixDiskLibConnectParams p{};
    p.vmxSpec = vmx_.data();
    p.serverName = host_.data();
    p.thumbPrint = thumb_.data();
    p.credType = VIXDISKLIB_CRED_UID;
    p.creds.uid.userName = user_.data();
    p.creds.uid.password = pw_.data();
    p.port = static_cast<uint32>(std::stoul(sim_->get("VCSIM_PORT")));
    return p;
  }

  static Simulator* sim_;
  static std::string error_, disk_;
  void* dl_ = nullptr;
  Api api_{};
  std::string host_, thumb_, vmx_, user_ = "u", pw_;
};
Simulator* RemoteCapi::sim_ = nullptr;
std::string RemoteCapi::error_, RemoteCapi::disk_;

TEST_F(RemoteCapi, ConnectOpenReadThroughHttps) {
  VixDiskLibConnectParams p = params("p");
  VixDiskLibConnection conn = nullptr;
  ASSERT_EQ(api_.ConnectEx(&p, TRUE, nullptr, "https", &conn), VIX_OK);

  VixDiskLibConnectParams* back = nullptr;
  ASSERT_EQ(api_.GetConnectParams(conn, &back), VIX_OK);
  ASSERT_NE(back, nullptr);
  EXPECT_STREQ(back->serverName, host_.c_str());
  EXPECT_STREQ(back->vmxSpec, vmx_.c_str());
  EXPECT_STREQ(back->thumbPrint, thumb_.c_str());
  EXPECT_STREQ(back->creds.uid.userName, "u");
  EXPECT_EQ(back->port, p.port);
  EXPECT_NE(back->serverName, p.serverName);  // a deep copy
  api_.FreeConnectParams(back);

  VixDiskLibHandle h = nullptr;
  ASSERT_EQ(
      api_.Open(conn, "[LocalDS_0] DC0_H0_VM0/disk1.vmdk", VIXDISKLIB_FLAG_OPEN_READ_ONLY, &h),
      VIX_OK);
  EXPECT_STREQ(api_.GetTransportMode(h), "https");
  VixDiskLibInfo* info = nullptr;
  ASSERT_EQ(api_.GetInfo(h, &info), VIX_OK);
  const uint64_t sectors = info->capacity;
  api_.FreeInfo(info);
  std::vector<uint8_t> got(sectors * 512);
  ASSERT_EQ(api_.Read(h, 0, sectors, got.data()), VIX_OK);
  EXPECT_TRUE(got == vixtest::qemu_raw(disk_));
  EXPECT_EQ(api_.Close(h), VIX_OK);
  EXPECT_EQ(api_.Disconnect(conn), VIX_OK);
}

TEST_F(RemoteCapi, WrongPasswordFailsConnectEx) {
  VixDiskLibConnectParams p = params("nope");
  VixDiskLibConnection conn = nullptr;
  EXPECT_EQ(api_.ConnectEx(&p, TRUE, nullptr, nullptr, &conn), VIX_E_AUTHENTICATION_FAIL);
  EXPECT_EQ(conn, nullptr);
}

// PrepareForAccess blocks Storage vMotion of the VM (RelocateVM_Task in its disabledMethod, as
// any vSphere client sees it) until EndAccess of every identity that asked.
TEST_F(RemoteCapi, PrepareForAccessBlocksRelocateUntilEndAccess) {
  std::string err;
  auto watcher = sim_->login("u", "p", &err);
  ASSERT_NE(watcher, nullptr) << err;
  const std::string vm = sim_->get("VCSIM_VM_DC0_H0_VM0");
  auto disabled = [&]() {
    auto m = vix::vsphere::disabled_methods(*watcher, vm);
    EXPECT_TRUE(m.ok()) << m.error().message;
    return m.ok() ? *m : std::vector<std::string>{};
  };
  const std::vector<std::string> relocate = {"RelocateVM_Task"};
  ASSERT_EQ(disabled(), std::vector<std::string>{});

  VixDiskLibConnectParams p = params("p");
  ASSERT_EQ(api_.PrepareForAccess(&p, "backup-a"), VIX_OK);
  EXPECT_EQ(disabled(), relocate);
  ASSERT_EQ(api_.PrepareForAccess(&p, "backup-b"), VIX_OK);
  ASSERT_EQ(api_.EndAccess(&p, "backup-a"), VIX_OK);
  EXPECT_EQ(disabled(), relocate) << "backup-b still reads";
  ASSERT_EQ(api_.EndAccess(&p, "backup-b"), VIX_OK);
  EXPECT_EQ(disabled(), std::vector<std::string>{});

  VixDiskLibConnectParams wrong = params("nope");
  EXPECT_EQ(api_.PrepareForAccess(&wrong, "backup-a"), VIX_E_AUTHENTICATION_FAIL);
  VixDiskLibConnectParams no_vm = params("p");
  std::string spec = "vm-without-moref";
  no_vm.vmxSpec = spec.data();
  EXPECT_EQ(api_.PrepareForAccess(&no_vm, "backup-a"), VIX_E_INVALID_ARG);
  EXPECT_EQ(disabled(), std::vector<std::string>{});
}

}  // namespace
