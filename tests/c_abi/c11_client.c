/*
 * A VDDK client as nbdkit's vddk plugin is one: C11, only vixDiskLib.h, the library dlopen()ed
 * from <libdir>/lib64/libvixDiskLib.so.8 with RTLD_NOW and every symbol resolved by name.
 * Checks the structure layouts against VDDK 7.0's, then walks the call sequence nbdkit makes.
 *
 * usage: c11_client <libdir> <disk.vmdk>
 * The disk (made by run_c11_client.sh) is 8 MiB, sectors 0..127 hold 0xab, 2048..2175 hold
 * 0xcd, the rest is unallocated.
 *
 * usage: c11_client <libdir> --remote <server> <port> <thumbprint> <user> <vmx spec>
 *                   <datastore path> <transports> <raw file>
 * (the password in $C11_PASSWORD): connects to a vCenter as a backup product does, opens the
 * disk through the first of <transports>, reads all of it (synchronous and asynchronous reads)
 * and compares it with <raw file>, qemu-img's bytes of the disk.
 */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vixDiskLib.h"

static int failures = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      failures++;                                          \
    }                                                      \
  } while (0)

#define CHECK_LAYOUT(type, member, off)                                        \
  CHECK(offsetof(type, member) == (off), #type "." #member " at %zu, want %d", \
        offsetof(type, member), (off))

/* The 23 symbols nbdkit >= 1.44 requires, typed as VDDK declares them. */
static struct {
  __typeof__(VixDiskLib_InitEx)* InitEx;
  __typeof__(VixDiskLib_Exit)* Exit;
  __typeof__(VixDiskLib_ListTransportModes)* ListTransportModes;
  __typeof__(VixDiskLib_GetErrorText)* GetErrorText;
  __typeof__(VixDiskLib_FreeErrorText)* FreeErrorText;
  __typeof__(VixDiskLib_AllocateConnectParams)* AllocateConnectParams;
  __typeof__(VixDiskLib_FreeConnectParams)* FreeConnectParams;
  __typeof__(VixDiskLib_ConnectEx)* ConnectEx;
  __typeof__(VixDiskLib_Open)* Open;
  __typeof__(VixDiskLib_GetTransportMode)* GetTransportMode;
  __typeof__(VixDiskLib_Close)* Close;
  __typeof__(VixDiskLib_Disconnect)* Disconnect;
  __typeof__(VixDiskLib_GetInfo)* GetInfo;
  __typeof__(VixDiskLib_FreeInfo)* FreeInfo;
  __typeof__(VixDiskLib_Read)* Read;
  __typeof__(VixDiskLib_Write)* Write;
  __typeof__(VixDiskLib_Flush)* Flush;
  __typeof__(VixDiskLib_Create)* Create;
  __typeof__(VixDiskLib_ReadAsync)* ReadAsync;
  __typeof__(VixDiskLib_WriteAsync)* WriteAsync;
  __typeof__(VixDiskLib_Wait)* Wait;
  __typeof__(VixDiskLib_QueryAllocatedBlocks)* QueryAllocatedBlocks;
  __typeof__(VixDiskLib_FreeBlockList)* FreeBlockList;
} vddk;

static void check_layouts(void) {
  CHECK(sizeof(VixDiskLibConnectParams) == 128, "sizeof ConnectParams %zu",
        sizeof(VixDiskLibConnectParams));
  CHECK_LAYOUT(VixDiskLibConnectParams, vmxSpec, 0);
  CHECK_LAYOUT(VixDiskLibConnectParams, serverName, 8);
  CHECK_LAYOUT(VixDiskLibConnectParams, thumbPrint, 16);
  CHECK_LAYOUT(VixDiskLibConnectParams, privateUse, 24);
  CHECK_LAYOUT(VixDiskLibConnectParams, credType, 32);
  CHECK_LAYOUT(VixDiskLibConnectParams, creds.uid.userName, 40);
  CHECK_LAYOUT(VixDiskLibConnectParams, creds.uid.password, 48);
  CHECK_LAYOUT(VixDiskLibConnectParams, creds.sessionId.cookie, 40);
  CHECK_LAYOUT(VixDiskLibConnectParams, creds.sessionId.userName, 48);
  CHECK_LAYOUT(VixDiskLibConnectParams, creds.sessionId.key, 56);
  CHECK_LAYOUT(VixDiskLibConnectParams, port, 64);
  CHECK_LAYOUT(VixDiskLibConnectParams, nfcHostPort, 68);
  CHECK_LAYOUT(VixDiskLibConnectParams, vimApiVer, 72);
  CHECK_LAYOUT(VixDiskLibConnectParams, reserved, 80);
  CHECK_LAYOUT(VixDiskLibConnectParams, state, 88);
  CHECK_LAYOUT(VixDiskLibConnectParams, spec.vStorageObjSpec.id, 96);
  CHECK_LAYOUT(VixDiskLibConnectParams, spec.vStorageObjSpec.datastoreMoRef, 104);
  CHECK_LAYOUT(VixDiskLibConnectParams, spec.vStorageObjSpec.ssId, 112);
  CHECK_LAYOUT(VixDiskLibConnectParams, specType, 120);

  CHECK(sizeof(VixDiskLibGeometry) == 12, "sizeof Geometry %zu", sizeof(VixDiskLibGeometry));
  CHECK(sizeof(VixDiskLibInfo) == 64, "sizeof Info %zu", sizeof(VixDiskLibInfo));
  CHECK_LAYOUT(VixDiskLibInfo, biosGeo, 0);
  CHECK_LAYOUT(VixDiskLibInfo, physGeo, 12);
  CHECK_LAYOUT(VixDiskLibInfo, capacity, 24);
  CHECK_LAYOUT(VixDiskLibInfo, adapterType, 32);
  CHECK_LAYOUT(VixDiskLibInfo, numLinks, 36);
  CHECK_LAYOUT(VixDiskLibInfo, parentFileNameHint, 40);
  CHECK_LAYOUT(VixDiskLibInfo, uuid, 48);
  CHECK_LAYOUT(VixDiskLibInfo, logicalSectorSize, 56);
  CHECK_LAYOUT(VixDiskLibInfo, physicalSectorSize, 60);

  CHECK(sizeof(VixDiskLibCreateParams) == 32, "sizeof CreateParams %zu",
        sizeof(VixDiskLibCreateParams));
  CHECK_LAYOUT(VixDiskLibCreateParams, diskType, 0);
  CHECK_LAYOUT(VixDiskLibCreateParams, adapterType, 4);
  CHECK_LAYOUT(VixDiskLibCreateParams, hwVersion, 8);
  CHECK_LAYOUT(VixDiskLibCreateParams, capacity, 16);
  CHECK_LAYOUT(VixDiskLibCreateParams, logicalSectorSize, 24);
  CHECK_LAYOUT(VixDiskLibCreateParams, physicalSectorSize, 28);

  CHECK(sizeof(VixDiskLibBlock) == 16, "sizeof Block %zu", sizeof(VixDiskLibBlock));
  CHECK(sizeof(VixDiskLibBlockList) == 24, "sizeof BlockList %zu", sizeof(VixDiskLibBlockList));
  CHECK_LAYOUT(VixDiskLibBlockList, numBlocks, 0);
  CHECK_LAYOUT(VixDiskLibBlockList, blocks, 8);

  CHECK(sizeof(VixError) == 8 && sizeof(Bool) == 1 && sizeof(VixDiskLibSectorType) == 8,
        "basic type sizes");
  CHECK(VIX_ASYNC == 25000 && VIX_E_DISK_OUTOFRANGE == 16007, "error constants");
}

static void* load(void* dl, const char* name) {
  void* p = dlsym(dl, name);
  CHECK(p != NULL, "required VDDK symbol %s is missing", name);
  return p;
}

static void log_fn(const char* fmt, va_list args) {
  fputs("[vddk log] ", stderr);
  vfprintf(stderr, fmt, args);
}

static void warn_fn(const char* fmt, va_list args) {
  fputs("[vddk warn] ", stderr);
  vfprintf(stderr, fmt, args);
}

static void print_error(const char* what, VixError err) {
  char* text = vddk.GetErrorText(err, NULL);
  fprintf(stderr, "%s: error %llu: %s\n", what, (unsigned long long)err, text ? text : "(null)");
  vddk.FreeErrorText(text);
}

struct completion {
  atomic_int calls;
  VixError result;
  pthread_t thread;
};

static void on_complete(void* data, VixError result) {
  struct completion* c = data;
  c->result = result;
  c->thread = pthread_self();
  atomic_fetch_add(&c->calls, 1);
}

static int all_bytes(const uint8* buf, size_t n, uint8 value) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != value) return 0;
  return 1;
}

static int remote_main(char** a) {
  VixError err = vddk.InitEx(6, 5, log_fn, warn_fn, warn_fn, a[1], NULL);
  if (err != VIX_OK) {
    print_error("InitEx", err);
    return 1;
  }
  VixDiskLibConnectParams* params = vddk.AllocateConnectParams();
  if (params == NULL) return 1;
  params->vmxSpec = a[7];
  params->serverName = a[3];
  params->port = (uint32)atoi(a[4]);
  params->thumbPrint = a[5];
  params->credType = VIXDISKLIB_CRED_UID;
  params->creds.uid.userName = a[6];
  params->creds.uid.password = getenv("C11_PASSWORD");
  VixDiskLibConnection conn = NULL;
  err = vddk.ConnectEx(params, 1, NULL, a[9], &conn);
  if (err != VIX_OK) {
    print_error("ConnectEx", err);
    return 1;
  }
  VixDiskLibHandle h = NULL;
  err = vddk.Open(conn, a[8], VIXDISKLIB_FLAG_OPEN_READ_ONLY, &h);
  if (err != VIX_OK) {
    print_error("Open", err);
    return 1;
  }
  const char* mode = vddk.GetTransportMode(h);
  size_t first_len = strcspn(a[9], ":");
  CHECK(mode && strlen(mode) == first_len && strncmp(mode, a[9], first_len) == 0,
        "GetTransportMode: %s, want the first of %s", mode ? mode : "(null)", a[9]);

  FILE* raw = fopen(a[10], "rb");
  CHECK(raw != NULL, "cannot open %s", a[10]);
  if (raw == NULL) return 1;
  fseek(raw, 0, SEEK_END);
  const long raw_size = ftell(raw);
  fseek(raw, 0, SEEK_SET);
  VixDiskLibInfo* info = NULL;
  err = vddk.GetInfo(h, &info);
  CHECK(err == VIX_OK && info != NULL, "GetInfo failed");
  VixDiskLibSectorType capacity = info ? info->capacity : 0;
  if (info) vddk.FreeInfo(info);
  CHECK(capacity * 512 == (uint64)raw_size, "capacity %llu sectors, the raw file %ld bytes",
        (unsigned long long)capacity, raw_size);

  /* 1 MiB at a time: the first half of each by Read, the second by ReadAsync. */
  enum { kStep = 2048 };
  static uint8 got[kStep * 512], want[kStep * 512];
  struct completion done;
  for (VixDiskLibSectorType s = 0; s < capacity && failures == 0; s += kStep) {
    const VixDiskLibSectorType n = capacity - s < kStep ? capacity - s : kStep;
    const VixDiskLibSectorType half = n / 2;
    memset(got, 0x5a, sizeof got);
    err = vddk.Read(h, s, half, got);
    CHECK(err == VIX_OK || half == 0, "Read at %llu: %llu", (unsigned long long)s,
          (unsigned long long)err);
    atomic_init(&done.calls, 0);
    done.result = VIX_E_FAIL;
    err = vddk.ReadAsync(h, s + half, n - half, got + half * 512, on_complete, &done);
    CHECK(err == VIX_ASYNC, "ReadAsync at %llu returned %llu", (unsigned long long)(s + half),
          (unsigned long long)err);
    err = vddk.Wait(h);
    CHECK(err == VIX_OK && done.result == VIX_OK, "async read at %llu failed",
          (unsigned long long)(s + half));
    CHECK(fread(want, 512, (size_t)n, raw) == (size_t)n, "short raw file at %llu",
          (unsigned long long)s);
    CHECK(memcmp(got, want, (size_t)n * 512) == 0, "bytes differ in sectors %llu+%llu",
          (unsigned long long)s, (unsigned long long)n);
  }
  fclose(raw);
  err = vddk.Close(h);
  CHECK(err == VIX_OK, "Close returned %llu", (unsigned long long)err);
  err = vddk.Disconnect(conn);
  CHECK(err == VIX_OK, "Disconnect returned %llu", (unsigned long long)err);
  params->vmxSpec = params->serverName = params->thumbPrint = NULL;
  params->creds.uid.userName = params->creds.uid.password = NULL;
  vddk.FreeConnectParams(params);
  vddk.Exit();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("c11_client: %s read through %s, all checks passed\n", a[8], a[9]);
  return 0;
}

int main(int argc, char** argv) {
  const int remote = argc == 11 && strcmp(argv[2], "--remote") == 0;
  if (argc != 3 && !remote) {
    fprintf(stderr,
            "usage: %s <libdir> <disk.vmdk>\n"
            "       %s <libdir> --remote <server> <port> <thumbprint> <user> <vmx spec> "
            "<datastore path> <transports> <raw file>\n",
            argv[0], argv[0]);
    return 2;
  }
  check_layouts();

  char lib_path[4096];
  snprintf(lib_path, sizeof lib_path, "%s/lib64/libvixDiskLib.so.8", argv[1]);
  void* dl = dlopen(lib_path, RTLD_NOW);
  if (dl == NULL) {
    fprintf(stderr, "FAIL dlopen %s: %s\n", lib_path, dlerror());
    return 1;
  }

#define LOAD(name) *(void**)(&vddk.name) = load(dl, "VixDiskLib_" #name)
  LOAD(InitEx);
  LOAD(Exit);
  LOAD(ListTransportModes);
  LOAD(GetErrorText);
  LOAD(FreeErrorText);
  LOAD(AllocateConnectParams);
  LOAD(FreeConnectParams);
  LOAD(ConnectEx);
  LOAD(Open);
  LOAD(GetTransportMode);
  LOAD(Close);
  LOAD(Disconnect);
  LOAD(GetInfo);
  LOAD(FreeInfo);
  LOAD(Read);
  LOAD(Write);
  LOAD(Flush);
  LOAD(Create);
  LOAD(ReadAsync);
  LOAD(WriteAsync);
  LOAD(Wait);
  LOAD(QueryAllocatedBlocks);
  LOAD(FreeBlockList);
  if (failures) return 1;
  if (remote) return remote_main(argv);

  /* Before InitEx: no transport list, errors say why. */
  CHECK(vddk.ListTransportModes() == NULL, "ListTransportModes before InitEx is not NULL");
  VixDiskLibConnection conn = NULL;
  VixError err = vddk.ConnectEx(NULL, 1, NULL, NULL, &conn);
  CHECK(err != VIX_OK, "ConnectEx before InitEx succeeded");
  char* text = vddk.GetErrorText(err, NULL);
  CHECK(text && strstr(text, "library not initialized"), "error before InitEx: %s",
        text ? text : "(null)");
  vddk.FreeErrorText(text);

  err = vddk.InitEx(6, 5, log_fn, warn_fn, warn_fn, argv[1], NULL);
  if (err != VIX_OK) {
    print_error("InitEx", err);
    return 1;
  }
  const char* modes = vddk.ListTransportModes();
  CHECK(modes && strstr(modes, "file"), "ListTransportModes: %s", modes ? modes : "(null)");

  VixDiskLibConnectParams* params = vddk.AllocateConnectParams();
  CHECK(params != NULL, "AllocateConnectParams returned NULL");
  if (params == NULL) return 1;
  static const VixDiskLibConnectParams zero;
  CHECK(memcmp(params, &zero, sizeof zero) == 0, "AllocateConnectParams not zeroed");

  err = vddk.ConnectEx(params, 1, NULL, NULL, &conn);
  if (err != VIX_OK) {
    print_error("ConnectEx", err);
    return 1;
  }
  VixDiskLibHandle h = NULL;
  err = vddk.Open(conn, argv[2], VIXDISKLIB_FLAG_OPEN_READ_ONLY, &h);
  if (err != VIX_OK) {
    print_error("Open", err);
    return 1;
  }
  const char* mode = vddk.GetTransportMode(h);
  CHECK(mode && strcmp(mode, "file") == 0, "GetTransportMode: %s", mode ? mode : "(null)");

  VixDiskLibInfo* info = NULL;
  err = vddk.GetInfo(h, &info);
  CHECK(err == VIX_OK && info != NULL, "GetInfo failed");
  if (info) {
    CHECK(info->capacity == 16384, "capacity %llu sectors, want 16384",
          (unsigned long long)info->capacity);
    CHECK(info->logicalSectorSize == 512 && info->physicalSectorSize == 512, "sector sizes %u/%u",
          info->logicalSectorSize, info->physicalSectorSize);
    vddk.FreeInfo(info);
  }

  /* Async reads as nbdkit makes them; Wait then check the pattern. */
  static uint8 buf[3][128 * 512];
  static const VixDiskLibSectorType starts[3] = {0, 2048, 128};
  static const uint8 want[3] = {0xab, 0xcd, 0x00};
  struct completion done[3];
  for (int i = 0; i < 3; i++) {
    atomic_init(&done[i].calls, 0);
    done[i].result = VIX_E_FAIL;
    memset(buf[i], 0x5a, sizeof buf[i]);
    err = vddk.ReadAsync(h, starts[i], 128, buf[i], on_complete, &done[i]);
    CHECK(err == VIX_ASYNC, "ReadAsync %d returned %llu, want VIX_ASYNC", i,
          (unsigned long long)err);
  }
  err = vddk.Wait(h);
  CHECK(err == VIX_OK, "Wait returned %llu", (unsigned long long)err);
  for (int i = 0; i < 3; i++) {
    CHECK(atomic_load(&done[i].calls) == 1, "read %d: callback ran %d times", i,
          atomic_load(&done[i].calls));
    CHECK(done[i].result == VIX_OK, "read %d: result %llu", i, (unsigned long long)done[i].result);
    CHECK(!pthread_equal(done[i].thread, pthread_self()), "read %d: callback on the caller", i);
    CHECK(all_bytes(buf[i], sizeof buf[i], want[i]), "read %d: pattern 0x%02x not found", i,
          want[i]);
  }
  err = vddk.ReadAsync(h, 16384 - 1, 2, buf[0], on_complete, &done[0]);
  CHECK(err == VIX_E_DISK_OUTOFRANGE, "ReadAsync past the end returned %llu",
        (unsigned long long)err);
  err = vddk.Write(h, 0, 1, buf[0]);
  CHECK(err != VIX_OK, "Write on a read-only handle succeeded");

  /* nbdkit's probe, then the whole-disk scan. */
  VixDiskLibBlockList* bl = NULL;
  err = vddk.QueryAllocatedBlocks(h, 0, 128, 128, &bl);
  CHECK(err == VIX_OK && bl != NULL, "QueryAllocatedBlocks probe failed");
  if (bl) vddk.FreeBlockList(bl);
  bl = NULL;
  err = vddk.QueryAllocatedBlocks(h, 0, 16384, 128, &bl);
  CHECK(err == VIX_OK && bl != NULL, "QueryAllocatedBlocks failed");
  if (bl) {
    CHECK(bl->numBlocks == 2, "numBlocks %u, want 2", bl->numBlocks);
    if (bl->numBlocks == 2) {
      CHECK(bl->blocks[0].offset == 0 && bl->blocks[0].length == 128, "block 0: %llu+%llu",
            (unsigned long long)bl->blocks[0].offset, (unsigned long long)bl->blocks[0].length);
      CHECK(bl->blocks[1].offset == 2048 && bl->blocks[1].length == 128, "block 1: %llu+%llu",
            (unsigned long long)bl->blocks[1].offset, (unsigned long long)bl->blocks[1].length);
    }
    err = vddk.FreeBlockList(bl);
    CHECK(err == VIX_OK, "FreeBlockList returned %llu", (unsigned long long)err);
  }
  err = vddk.QueryAllocatedBlocks(h, 0, 100, 100, &bl);
  CHECK(err == VIX_E_INVALID_ARG, "QueryAllocatedBlocks chunk 100 returned %llu",
        (unsigned long long)err);

  err = vddk.Close(h);
  CHECK(err == VIX_OK, "Close returned %llu", (unsigned long long)err);
  err = vddk.Disconnect(conn);
  CHECK(err == VIX_OK, "Disconnect returned %llu", (unsigned long long)err);
  vddk.FreeConnectParams(params);
  vddk.Exit();
  CHECK(vddk.ListTransportModes() == NULL, "ListTransportModes after Exit is not NULL");

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("c11_client: all checks passed\n");
  return 0;
}
