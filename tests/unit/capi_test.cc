// The C ABI as shipped: libvixDiskLib.so.8 dlopen()ed from the build's VDDK tree (capi.cc lives
// only in the .so). It carries its own copy of the core, so its state is separate from the
// vix::Library the other tests use.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "support/fixtures.h"
#include "vixDiskLib.h"

namespace {

struct Api {
  void* dl = nullptr;
#define VIX_FN(name) decltype(&VixDiskLib_##name) name = nullptr;
  VIX_FN(InitEx)
  VIX_FN(Init)
  VIX_FN(Exit)
  VIX_FN(ListTransportModes)
  VIX_FN(GetErrorText)
  VIX_FN(FreeErrorText)
  VIX_FN(AllocateConnectParams)
  VIX_FN(FreeConnectParams)
  VIX_FN(GetConnectParams)
  VIX_FN(ConnectEx)
  VIX_FN(Connect)
  VIX_FN(Disconnect)
  VIX_FN(Cleanup)
  VIX_FN(PrepareForAccess)
  VIX_FN(EndAccess)
  VIX_FN(Open)
  VIX_FN(Close)
  VIX_FN(GetTransportMode)
  VIX_FN(GetInfo)
  VIX_FN(FreeInfo)
  VIX_FN(Read)
  VIX_FN(Write)
  VIX_FN(ReadAsync)
  VIX_FN(WriteAsync)
  VIX_FN(Wait)
  VIX_FN(Flush)
  VIX_FN(QueryAllocatedBlocks)
  VIX_FN(FreeBlockList)
  VIX_FN(ReadMetadata)
  VIX_FN(WriteMetadata)
  VIX_FN(GetMetadataKeys)
  VIX_FN(Create)
  VIX_FN(CreateChild)
  VIX_FN(Unlink)
  VIX_FN(Grow)
  VIX_FN(Shrink)
  VIX_FN(Defragment)
  VIX_FN(Rename)
  VIX_FN(Clone)
  VIX_FN(IsAttachPossible)
  VIX_FN(Attach)
  VIX_FN(SpaceNeededForClone)
  VIX_FN(CheckRepair)
#undef VIX_FN
  std::string missing;
};

const Api& api() {
  static Api a = [] {
    Api x;
    std::string path = std::string(VIXFS_VDDK_TREE) + "/lib64/libvixDiskLib.so.8";
    x.dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!x.dl) {
      x.missing = "dlopen " + path + ": " + dlerror();
      return x;
    }
#define VIX_LOAD(name)                                                           \
  x.name = reinterpret_cast<decltype(x.name)>(dlsym(x.dl, "VixDiskLib_" #name)); \
  if (!x.name) x.missing += " VixDiskLib_" #name
    VIX_LOAD(InitEx);
    VIX_LOAD(Init);
    VIX_LOAD(Exit);
    VIX_LOAD(ListTransportModes);
    VIX_LOAD(GetErrorText);
    VIX_LOAD(FreeErrorText);
    VIX_LOAD(AllocateConnectParams);
    VIX_LOAD(FreeConnectParams);
    VIX_LOAD(GetConnectParams);
    VIX_LOAD(ConnectEx);
    VIX_LOAD(Connect);
    VIX_LOAD(Disconnect);
    VIX_LOAD(Cleanup);
    VIX_LOAD(PrepareForAccess);
    VIX_LOAD(EndAccess);
    VIX_LOAD(Open);
    VIX_LOAD(Close);
    VIX_LOAD(GetTransportMode);
    VIX_LOAD(GetInfo);
    VIX_LOAD(FreeInfo);
    VIX_LOAD(Read);
    VIX_LOAD(Write);
    VIX_LOAD(ReadAsync);
    VIX_LOAD(WriteAsync);
    VIX_LOAD(Wait);
    VIX_LOAD(Flush);
    VIX_LOAD(QueryAllocatedBlocks);
    VIX_LOAD(FreeBlockList);
    VIX_LOAD(ReadMetadata);
    VIX_LOAD(WriteMetadata);
    VIX_LOAD(GetMetadataKeys);
    VIX_LOAD(Create);
    VIX_LOAD(CreateChild);
    VIX_LOAD(Unlink);
    VIX_LOAD(Grow);
    VIX_LOAD(Shrink);
    VIX_LOAD(Defragment);
    VIX_LOAD(Rename);
    VIX_LOAD(Clone);
    VIX_LOAD(IsAttachPossible);
    VIX_LOAD(Attach);
    VIX_LOAD(SpaceNeededForClone);
    VIX_LOAD(CheckRepair);
#undef VIX_LOAD
    return x;
  }();
  return a;
}

std::string text_of(VixError err) {
  char* t = api().GetErrorText(err, nullptr);
  std::string s = t ? t : "";
  api().FreeErrorText(t);
  return s;
}

class CapiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(api().missing.empty())
        << "libvixDiskLib.so.8 (build target vixDiskLib):" << api().missing;
  }
  void TearDown() override {
    if (api().Exit) api().Exit();
  }
  // InitEx + local ConnectEx, as nbdkit does it.
  VixDiskLibConnection connect(bool read_only = false) {
    EXPECT_EQ(api().InitEx(6, 5, nullptr, nullptr, nullptr, nullptr, nullptr), VIX_OK);
    VixDiskLibConnectParams* p = api().AllocateConnectParams();
    VixDiskLibConnection conn = nullptr;
    EXPECT_EQ(api().ConnectEx(p, read_only, nullptr, nullptr, &conn), VIX_OK);
    api().FreeConnectParams(p);
    return conn;
  }
  vixtest::TempDir dir_;
};

TEST_F(CapiTest, EverythingBeforeInitExSaysNotInitialized) {
  const Api& a = api();
  EXPECT_EQ(a.ListTransportModes(), nullptr);
  VixDiskLibConnection conn = nullptr;
  VixDiskLibHandle h = nullptr;
  uint8 buf[512];
  uint32 n1 = 9, n2 = 9;
  const VixError errors[] = {
      a.ConnectEx(nullptr, 0, nullptr, nullptr, &conn),
      a.Connect(nullptr, &conn),
      a.Disconnect(conn),
      a.Cleanup(nullptr, &n1, &n2),
      a.PrepareForAccess(nullptr, "x"),
      a.EndAccess(nullptr, "x"),
      a.Open(conn, "/x.vmdk", 0, &h),
      a.Close(h),
      a.Read(h, 0, 1, buf),
      a.Write(h, 0, 1, buf),
      a.ReadAsync(
          h, 0, 1, buf, [](void*, VixError) {}, nullptr),
      a.Wait(h),
      a.Flush(h),
      a.QueryAllocatedBlocks(h, 0, 128, 128, nullptr),
      a.FreeBlockList(nullptr),
      a.GetMetadataKeys(h, nullptr, 0, nullptr),
      a.Create(conn, "/x.vmdk", nullptr, nullptr, nullptr),
      a.Unlink(conn, "/x.vmdk"),
      a.Shrink(h, nullptr, nullptr),
      a.Rename("/a", "/b"),
      a.CheckRepair(conn, "/x.vmdk", 0),
  };
  for (VixError e : errors) {
    EXPECT_NE(e, static_cast<VixError>(VIX_OK));
    EXPECT_NE(text_of(e).find("library not initialized"), std::string::npos) << text_of(e);
  }
  EXPECT_EQ(n1, 0u);
  EXPECT_EQ(n2, 0u);
  // These work without InitEx.
  VixDiskLibConnectParams* p = a.AllocateConnectParams();
  ASSERT_NE(p, nullptr);
  a.FreeConnectParams(p);
  a.FreeConnectParams(nullptr);
  a.FreeInfo(nullptr);
  a.FreeErrorText(nullptr);
}

TEST_F(CapiTest, ErrorTextForEveryHeaderCode) {
  const VixError codes[] = {VIX_OK,
                            VIX_E_FAIL,
                            VIX_E_OUT_OF_MEMORY,
                            VIX_E_INVALID_ARG,
                            VIX_E_FILE_NOT_FOUND,
                            VIX_E_OBJECT_IS_BUSY,
                            VIX_E_NOT_SUPPORTED,
                            VIX_E_FILE_ERROR,
                            VIX_E_DISK_FULL,
                            VIX_E_INCORRECT_FILE_TYPE,
                            VIX_E_CANCELLED,
                            VIX_E_FILE_READ_ONLY,
                            VIX_E_FILE_ALREADY_EXISTS,
                            VIX_E_FILE_ACCESS_ERROR,
                            VIX_E_REQUIRES_LARGE_FILES,
                            VIX_E_FILE_ALREADY_LOCKED,
                            VIX_E_VMDB,
                            VIX_E_NOT_SUPPORTED_ON_REMOTE_OBJECT,
                            VIX_E_FILE_TOO_BIG,
                            VIX_E_FILE_NAME_INVALID,
                            VIX_E_ALREADY_EXISTS,
                            VIX_E_BUFFER_TOOSMALL,
                            VIX_E_OBJECT_NOT_FOUND,
                            VIX_E_HOST_NOT_CONNECTED,
                            VIX_E_INVALID_UTF8_STRING,
                            VIX_E_UNFINISHED_JOB,
                            VIX_E_NEED_KEY,
                            VIX_E_OPERATION_ALREADY_IN_PROGRESS,
                            VIX_E_LICENSE,
                            VIX_E_VM_HOST_DISCONNECTED,
                            VIX_E_AUTHENTICATION_FAIL,
                            VIX_E_HOST_CONNECTION_LOST,
                            VIX_E_DUPLICATE_NAME,
                            VIX_E_ARGUMENT_TOO_BIG,
                            VIX_E_INVALID_HANDLE,
                            VIX_E_NOT_SUPPORTED_ON_HANDLE_TYPE,
                            VIX_E_TOO_MANY_HANDLES,
                            VIX_E_NOT_FOUND,
                            VIX_E_TYPE_MISMATCH,
                            VIX_E_INVALID_XML,
                            VIX_E_VM_NOT_FOUND,
                            VIX_E_HOST_DISK_INVALID_VALUE,
                            VIX_E_HOST_DISK_SECTORSIZE,
                            VIX_E_HOST_FILE_ERROR_EOF,
                            VIX_E_HOST_NETBLKDEV_HANDSHAKE,
                            VIX_E_HOST_SOCKET_CREATION_ERROR,
                            VIX_E_HOST_SERVER_NOT_FOUND,
                            VIX_E_HOST_NETWORK_CONN_REFUSED,
                            VIX_E_HOST_TCP_SOCKET_ERROR,
                            VIX_E_HOST_TCP_CONN_LOST,
                            VIX_E_HOST_NBD_HASHFILE_VOLUME,
                            VIX_E_HOST_NBD_HASHFILE_INIT,
                            VIX_E_DISK_INVAL,
                            VIX_E_DISK_NOINIT,
                            VIX_E_DISK_NOIO,
                            VIX_E_DISK_PARTIALCHAIN,
                            VIX_E_DISK_NEEDSREPAIR,
                            VIX_E_DISK_OUTOFRANGE,
                            VIX_E_DISK_CID_MISMATCH,
                            VIX_E_DISK_CANTSHRINK,
                            VIX_E_DISK_PARTMISMATCH,
                            VIX_E_DISK_UNSUPPORTEDDISKVERSION,
                            VIX_E_DISK_OPENPARENT,
                            VIX_E_DISK_NOTSUPPORTED,
                            VIX_E_DISK_NEEDKEY,
                            VIX_E_DISK_NOKEYOVERRIDE,
                            VIX_E_DISK_NOTENCRYPTED,
                            VIX_E_DISK_NOKEY,
                            VIX_E_DISK_INVALIDPARTITIONTABLE,
                            VIX_E_DISK_NOTNORMAL,
                            VIX_E_DISK_NOTENCDESC,
                            VIX_E_DISK_NEEDVMFS,
                            VIX_E_DISK_RAWTOOBIG,
                            VIX_E_DISK_TOOMANYOPENFILES,
                            VIX_E_DISK_TOOMANYREDO,
                            VIX_E_DISK_RAWTOOSMALL,
                            VIX_E_DISK_INVALIDCHAIN,
                            VIX_E_DISK_KEY_NOTFOUND,
                            VIX_E_DISK_SUBSYSTEM_INIT_FAIL,
                            VIX_E_DISK_INVALID_CONNECTION,
                            VIX_E_DISK_ENCODING,
                            VIX_E_DISK_CANTREPAIR,
                            VIX_E_DISK_INVALIDDISK,
                            VIX_E_DISK_NOLICENSE,
                            VIX_E_DISK_NODEVICE,
                            VIX_E_DISK_UNSUPPORTEDDEVICE,
                            VIX_E_DISK_CAPACITY_MISMATCH,
                            VIX_E_DISK_PARENT_NOTALLOWED,
                            VIX_E_DISK_ATTACH_ROOTLINK,
                            VIX_E_CANNOT_CONNECT_TO_HOST,
                            VIX_E_NOT_FOR_REMOTE_HOST,
                            VIX_E_INVALID_HOSTNAME_SPECIFICATION,
                            VIX_ASYNC,
                            VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED};
  for (VixError c : codes) {
    std::string t = text_of(c);
    EXPECT_FALSE(t.empty()) << c;
    if (c != VIX_E_FAIL) {
      EXPECT_EQ(t.find("Unknown error"), std::string::npos) << c << ": " << t;
    }
  }
  EXPECT_NE(text_of(54321).find("54321"), std::string::npos);
}

TEST_F(CapiTest, InitExTwiceFailsAndListsFile) {
  ASSERT_EQ(api().InitEx(6, 5, nullptr, nullptr, nullptr, nullptr, nullptr), VIX_OK);
  EXPECT_NE(api().InitEx(6, 5, nullptr, nullptr, nullptr, nullptr, nullptr),
            static_cast<VixError>(VIX_OK));
  const char* modes = api().ListTransportModes();
  ASSERT_NE(modes, nullptr);
  EXPECT_EQ(std::string(modes).rfind("file", 0), 0u);
  api().Exit();
  EXPECT_EQ(api().ListTransportModes(), nullptr);
  EXPECT_EQ(api().Init(1, 1, nullptr, nullptr, nullptr, nullptr), VIX_OK);
}

TEST_F(CapiTest, MalformedConfigMakesInitExFail) {
  std::string conf = dir_.file("bad.conf");
  vixtest::write_file(conf, std::string("tmpDirectory = \"/tmp\"\nbroken line\n"));
  VixError e = api().InitEx(6, 5, nullptr, nullptr, nullptr, nullptr, conf.c_str());
  ASSERT_NE(e, static_cast<VixError>(VIX_OK));
  EXPECT_NE(text_of(e).find("bad.conf:2"), std::string::npos) << text_of(e);
  EXPECT_EQ(api().ListTransportModes(), nullptr);
}

TEST_F(CapiTest, ConnectParamsOwnership) {
  VixDiskLibConnection conn = connect();
  ASSERT_NE(conn, nullptr);
  // Caller-owned strings are never freed (ASan would report a bad free of a literal).
  VixDiskLibConnectParams* p = api().AllocateConnectParams();
  static char server[] = "vc.example.com";
  static char user[] = "backup";
  p->serverName = server;
  p->credType = VIXDISKLIB_CRED_UID;
  p->creds.uid.userName = user;
  api().FreeConnectParams(p);

  VixDiskLibConnectParams* got = nullptr;
  ASSERT_EQ(api().GetConnectParams(conn, &got), VIX_OK);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->serverName, nullptr);
  api().FreeConnectParams(got);
  EXPECT_EQ(api().GetConnectParams(nullptr, &got), static_cast<VixError>(VIX_E_INVALID_ARG));
  EXPECT_EQ(api().Disconnect(conn), VIX_OK);
  EXPECT_EQ(api().Disconnect(conn), static_cast<VixError>(VIX_E_INVALID_ARG));  // stale handle
}

TEST_F(CapiTest, ConnectExRejectsUnknownModesAndRemoteServers) {
  ASSERT_EQ(api().InitEx(6, 5, nullptr, nullptr, nullptr, nullptr, nullptr), VIX_OK);
  VixDiskLibConnection conn = nullptr;
  VixError e = api().ConnectEx(nullptr, 1, nullptr, "file:teleport", &conn);
  EXPECT_EQ(e, static_cast<VixError>(VIX_E_INVALID_ARG));
  EXPECT_NE(text_of(e).find("teleport"), std::string::npos);
  EXPECT_EQ(conn, nullptr);
  VixDiskLibConnectParams* p = api().AllocateConnectParams();
  static char server[] = "vc.example.com";
  p->serverName = server;
  e = api().ConnectEx(p, 1, nullptr, nullptr, &conn);
  EXPECT_EQ(e, static_cast<VixError>(VIX_E_NOT_SUPPORTED));
  api().FreeConnectParams(p);
  uint32 cleaned = 7, remaining = 7;
  EXPECT_EQ(api().Cleanup(nullptr, &cleaned, &remaining), VIX_OK);
  EXPECT_EQ(cleaned + remaining, 0u);
  EXPECT_EQ(api().Cleanup(nullptr, nullptr, nullptr), VIX_OK);
  EXPECT_EQ(api().PrepareForAccess(nullptr, "vixfs"), VIX_OK);
  EXPECT_EQ(api().EndAccess(nullptr, "vixfs"), VIX_OK);
}

TEST_F(CapiTest, OpenInfoAsyncMetadataAndErrors) {
  std::string img = dir_.file("disk.vmdk");
  vixtest::run_ok("qemu-img create -q -f vmdk " + vixtest::sh_quote(img) + " 2M");
  vixtest::run_ok("qemu-io -f vmdk -c 'write -q -P 0x7e 512 512' " + vixtest::sh_quote(img));
  VixDiskLibConnection conn = connect();
  VixDiskLibHandle h = nullptr;
  VixError e = api().Open(conn, dir_.file("nope.vmdk").c_str(), 0, &h);
  ASSERT_NE(e, static_cast<VixError>(VIX_OK));
  EXPECT_NE(text_of(e).find("nope.vmdk"), std::string::npos) << text_of(e);
  EXPECT_EQ(api().Open(nullptr, img.c_str(), 0, &h), static_cast<VixError>(VIX_E_INVALID_ARG));

  ASSERT_EQ(api().Open(conn, img.c_str(), 0, &h), VIX_OK)
      << text_of(api().Open(conn, img.c_str(), 0, &h));
  EXPECT_STREQ(api().GetTransportMode(h), "file");
  VixDiskLibInfo* info = nullptr;
  ASSERT_EQ(api().GetInfo(h, &info), VIX_OK);
  EXPECT_EQ(info->capacity, 4096u);
  EXPECT_EQ(info->logicalSectorSize, 512u);
  EXPECT_EQ(info->parentFileNameHint, nullptr);
  ASSERT_NE(info->uuid, nullptr);
  std::thread([info] { api().FreeInfo(info); }).join();  // nbdkit frees on another thread

  // Async read without Wait: the callback still comes, exactly once, from another thread.
  struct Done {
    std::atomic<int> calls{0};
    VixError result = VIX_E_FAIL;
    std::thread::id where;
  } done;
  uint8 buf[512];
  e = api().ReadAsync(
      h, 1, 1, buf,
      [](void* d, VixError r) {
        auto* dd = static_cast<Done*>(d);
        dd->result = r;
        dd->where = std::this_thread::get_id();
        dd->calls++;
      },
      &done);
  ASSERT_EQ(e, static_cast<VixError>(VIX_ASYNC));
  for (int i = 0; i < 500 && done.calls.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(done.calls.load(), 1);
  EXPECT_EQ(done.result, static_cast<VixError>(VIX_OK));
  EXPECT_NE(done.where, std::this_thread::get_id());
  EXPECT_EQ(buf[0], 0x7e);
  EXPECT_EQ(buf[511], 0x7e);
  EXPECT_EQ(api().Read(h, 4096, 1, buf), static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));

  // Metadata: size query, too small, then the real thing.
  size_t need = 0;
  ASSERT_EQ(api().GetMetadataKeys(h, nullptr, 0, &need),
            static_cast<VixError>(VIX_E_BUFFER_TOOSMALL));
  ASSERT_GT(need, 1u);
  std::vector<char> keys(need);
  EXPECT_EQ(api().GetMetadataKeys(h, keys.data(), need - 1, nullptr),
            static_cast<VixError>(VIX_E_BUFFER_TOOSMALL));
  ASSERT_EQ(api().GetMetadataKeys(h, keys.data(), need, &need), VIX_OK);
  EXPECT_EQ(keys[need - 1], '\0');
  EXPECT_EQ(keys[need - 2], '\0');
  std::string first(keys.data());
  ASSERT_FALSE(first.empty());
  size_t vlen = 0;
  ASSERT_EQ(api().ReadMetadata(h, first.c_str(), nullptr, 0, &vlen),
            static_cast<VixError>(VIX_E_BUFFER_TOOSMALL));
  std::vector<char> val(vlen);
  ASSERT_EQ(api().ReadMetadata(h, first.c_str(), val.data(), vlen, nullptr), VIX_OK);
  EXPECT_EQ(strlen(val.data()) + 1, vlen);
  EXPECT_EQ(api().ReadMetadata(h, "no.such.key", val.data(), vlen, nullptr),
            static_cast<VixError>(VIX_E_DISK_KEY_NOTFOUND));

  e = api().Shrink(h, nullptr, nullptr);
  EXPECT_EQ(e, static_cast<VixError>(VIX_E_NOT_SUPPORTED));
  EXPECT_NE(text_of(e).find("VixDiskLib_Shrink is not supported by vixfs"), std::string::npos);
  uint64 space = 0;
  ASSERT_EQ(api().SpaceNeededForClone(h, VIXDISKLIB_DISK_MONOLITHIC_FLAT, &space), VIX_OK);
  EXPECT_GE(space, 2u << 20);

  EXPECT_EQ(api().Disconnect(conn), static_cast<VixError>(VIX_E_OBJECT_IS_BUSY));
  EXPECT_EQ(api().Close(h), VIX_OK);
  EXPECT_EQ(api().Close(h), static_cast<VixError>(VIX_E_INVALID_ARG));
  EXPECT_EQ(api().CheckRepair(conn, img.c_str(), 0), VIX_OK);
  EXPECT_EQ(api().Disconnect(conn), VIX_OK);
}

TEST_F(CapiTest, CreateReportsProgressAndUnlinkRemovesTheFiles) {
  VixDiskLibConnection conn = connect();
  std::string img = dir_.file("new.vmdk");
  VixDiskLibCreateParams cp{};
  cp.diskType = VIXDISKLIB_DISK_MONOLITHIC_SPARSE;
  cp.adapterType = VIXDISKLIB_ADAPTER_SCSI_LSILOGIC;
  cp.hwVersion = VIXDISKLIB_HWVERSION_WORKSTATION_5;
  cp.capacity = 2048;
  int last = -1;
  VixError e = api().Create(
      conn, img.c_str(), &cp,
      [](void* d, int pct) -> Bool {
        *static_cast<int*>(d) = pct;
        return TRUE;
      },
      &last);
  ASSERT_EQ(e, VIX_OK) << text_of(e);
  EXPECT_EQ(last, 100);
  EXPECT_EQ(vixtest::run("qemu-img check -f vmdk " + vixtest::sh_quote(img)).exit_code, 0);
  EXPECT_NE(api().Create(conn, img.c_str(), &cp, nullptr, nullptr), static_cast<VixError>(VIX_OK));

  std::string flat = dir_.file("flat.vmdk");
  cp.diskType = VIXDISKLIB_DISK_MONOLITHIC_FLAT;
  ASSERT_EQ(api().Create(conn, flat.c_str(), &cp, nullptr, nullptr), VIX_OK);
  ASSERT_EQ(api().Unlink(conn, flat.c_str()), VIX_OK);
  ASSERT_EQ(api().Unlink(conn, img.c_str()), VIX_OK);
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path()));
  EXPECT_EQ(api().Disconnect(conn), VIX_OK);
}

}  // namespace
