/*
 * vixDiskLib.h — vixfs's implementation of VMware's VixDiskLib C API.
 *
 * Names, typedefs, constants and structure layouts follow VMware's VDDK 7.0 header (see
 * docs/reference/vddk-abi.md), so a program written against VMware's header builds and links
 * against libvixDiskLib.so from vixfs. Compiles as C11 and as C++.
 *
 * Ownership: every pointer a function hands out (GetInfo, GetErrorText, QueryAllocatedBlocks,
 * AllocateConnectParams, GetConnectParams) is freed with its matching Free* function.
 * Thread safety: all functions may be called from any thread once InitEx has returned.
 */
#ifndef VIXFS_VIXDISKLIB_H
#define VIXFS_VIXDISKLIB_H

/* The layout follows VMware's header, columns aligned by hand: clang-format leaves it. */
/* clang-format off */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* VMware's basic types (vm_basic_types.h). Guarded so a program that has them already still
 * compiles. */
#ifndef VIXFS_HAVE_VM_BASIC_TYPES
#define VIXFS_HAVE_VM_BASIC_TYPES
typedef uint64_t uint64;
typedef int64_t int64;
typedef uint32_t uint32;
typedef int32_t int32;
typedef uint16_t uint16;
typedef int16_t int16;
typedef uint8_t uint8;
typedef int8_t int8;
typedef char Bool;
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

/* ---- Errors ---------------------------------------------------------------------------- */

typedef uint64 VixError;
#define VIX_ERROR_CODE(err) ((err)&0xFFFF)
#define VIX_SUCCEEDED(err) (VIX_OK == (err))
#define VIX_FAILED(err) (VIX_OK != (err))

enum {
  VIX_OK = 0,
  VIX_E_FAIL = 1,
  VIX_E_OUT_OF_MEMORY = 2,
  VIX_E_INVALID_ARG = 3,
  VIX_E_FILE_NOT_FOUND = 4,
  VIX_E_OBJECT_IS_BUSY = 5,
  VIX_E_NOT_SUPPORTED = 6,
  VIX_E_FILE_ERROR = 7,
  VIX_E_DISK_FULL = 8,
  VIX_E_INCORRECT_FILE_TYPE = 9,
  VIX_E_CANCELLED = 10,
  VIX_E_FILE_READ_ONLY = 11,
  VIX_E_FILE_ALREADY_EXISTS = 12,
  VIX_E_FILE_ACCESS_ERROR = 13,
  VIX_E_REQUIRES_LARGE_FILES = 14,
  VIX_E_FILE_ALREADY_LOCKED = 15,
  VIX_E_VMDB = 16,
  VIX_E_NOT_SUPPORTED_ON_REMOTE_OBJECT = 20,
  VIX_E_FILE_TOO_BIG = 21,
  VIX_E_FILE_NAME_INVALID = 22,
  VIX_E_ALREADY_EXISTS = 23,
  VIX_E_BUFFER_TOOSMALL = 24,
  VIX_E_OBJECT_NOT_FOUND = 25,
  VIX_E_HOST_NOT_CONNECTED = 26,
  VIX_E_INVALID_UTF8_STRING = 27,
  VIX_E_UNFINISHED_JOB = 29,
  VIX_E_NEED_KEY = 30,
  VIX_E_OPERATION_ALREADY_IN_PROGRESS = 31,
  VIX_E_LICENSE = 32,
  VIX_E_VM_HOST_DISCONNECTED = 34,
  VIX_E_AUTHENTICATION_FAIL = 35,
  VIX_E_HOST_CONNECTION_LOST = 36,
  VIX_E_DUPLICATE_NAME = 41,
  VIX_E_ARGUMENT_TOO_BIG = 44,

  VIX_E_INVALID_HANDLE = 1000,
  VIX_E_NOT_SUPPORTED_ON_HANDLE_TYPE = 1001,
  VIX_E_TOO_MANY_HANDLES = 1002,

  VIX_E_NOT_FOUND = 2000,
  VIX_E_TYPE_MISMATCH = 2001,
  VIX_E_INVALID_XML = 2002,

  VIX_E_VM_NOT_FOUND = 4000,

  VIX_E_HOST_DISK_INVALID_VALUE = 14003,
  VIX_E_HOST_DISK_SECTORSIZE = 14004,
  VIX_E_HOST_FILE_ERROR_EOF = 14005,
  VIX_E_HOST_NETBLKDEV_HANDSHAKE = 14006,
  VIX_E_HOST_SOCKET_CREATION_ERROR = 14007,
  VIX_E_HOST_SERVER_NOT_FOUND = 14008,
  VIX_E_HOST_NETWORK_CONN_REFUSED = 14009,
  VIX_E_HOST_TCP_SOCKET_ERROR = 14010,
  VIX_E_HOST_TCP_CONN_LOST = 14011,
  VIX_E_HOST_NBD_HASHFILE_VOLUME = 14012,
  VIX_E_HOST_NBD_HASHFILE_INIT = 14013,

  VIX_E_DISK_INVAL = 16000,
  VIX_E_DISK_NOINIT = 16001,
  VIX_E_DISK_NOIO = 16002,
  VIX_E_DISK_PARTIALCHAIN = 16003,
  VIX_E_DISK_NEEDSREPAIR = 16006,
  VIX_E_DISK_OUTOFRANGE = 16007,
  VIX_E_DISK_CID_MISMATCH = 16008,
  VIX_E_DISK_CANTSHRINK = 16009,
  VIX_E_DISK_PARTMISMATCH = 16010,
  VIX_E_DISK_UNSUPPORTEDDISKVERSION = 16011,
  VIX_E_DISK_OPENPARENT = 16012,
  VIX_E_DISK_NOTSUPPORTED = 16013,
  VIX_E_DISK_NEEDKEY = 16014,
  VIX_E_DISK_NOKEYOVERRIDE = 16015,
  VIX_E_DISK_NOTENCRYPTED = 16016,
  VIX_E_DISK_NOKEY = 16017,
  VIX_E_DISK_INVALIDPARTITIONTABLE = 16018,
  VIX_E_DISK_NOTNORMAL = 16019,
  VIX_E_DISK_NOTENCDESC = 16020,
  VIX_E_DISK_NEEDVMFS = 16022,
  VIX_E_DISK_RAWTOOBIG = 16024,
  VIX_E_DISK_TOOMANYOPENFILES = 16027,
  VIX_E_DISK_TOOMANYREDO = 16028,
  VIX_E_DISK_RAWTOOSMALL = 16029,
  VIX_E_DISK_INVALIDCHAIN = 16030,
  VIX_E_DISK_KEY_NOTFOUND = 16052,
  VIX_E_DISK_SUBSYSTEM_INIT_FAIL = 16053,
  VIX_E_DISK_INVALID_CONNECTION = 16054,
  VIX_E_DISK_ENCODING = 16061,
  VIX_E_DISK_CANTREPAIR = 16062,
  VIX_E_DISK_INVALIDDISK = 16063,
  VIX_E_DISK_NOLICENSE = 16064,
  VIX_E_DISK_NODEVICE = 16065,
  VIX_E_DISK_UNSUPPORTEDDEVICE = 16066,
  VIX_E_DISK_CAPACITY_MISMATCH = 16067,
  VIX_E_DISK_PARENT_NOTALLOWED = 16068,
  VIX_E_DISK_ATTACH_ROOTLINK = 16069,

  VIX_E_CANNOT_CONNECT_TO_HOST = 18000,
  VIX_E_NOT_FOR_REMOTE_HOST = 18001,
  VIX_E_INVALID_HOSTNAME_SPECIFICATION = 18002,

  VIX_ASYNC = 25000,
  VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED = 26000
};

/* ---- Sizes, flags and enums --------------------------------------------------------------- */

typedef uint64 VixDiskLibSectorType;

#define VIXDISKLIB_SECTOR_SIZE 512
#define VIXDISKLIB_MIN_CHUNK_SIZE 128
#define VIXDISKLIB_MAX_CHUNK_NUMBER (512 * 1024)

#define VIXDISKLIB_VERSION_MAJOR 7
#define VIXDISKLIB_VERSION_MINOR 0

#define VIXDISKLIB_FLAG_OPEN_UNBUFFERED (1 << 0)
#define VIXDISKLIB_FLAG_OPEN_SINGLE_LINK (1 << 1)
#define VIXDISKLIB_FLAG_OPEN_READ_ONLY (1 << 2)
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_ZLIB (1 << 4)
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_FASTLZ (1 << 5)
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_SKIPZ (1 << 6)
#define VIXDISKLIB_FLAG_OPEN_COMPRESSION_MASK 0x03f0

typedef enum {
  VIXDISKLIB_CRED_UID = 1,
  VIXDISKLIB_CRED_SESSIONID = 2,
  VIXDISKLIB_CRED_TICKETID = 3,
  VIXDISKLIB_CRED_SSPI = 4,
  VIXDISKLIB_CRED_UNKNOWN = 256
} VixDiskLibCredType;

typedef enum {
  VIXDISKLIB_SPEC_VMX = 0,
  VIXDISKLIB_SPEC_VSTORAGE_OBJECT = 1,
  VIXDISKLIB_SPEC_UNKNOWN = 2
} VixDiskLibSpecType;

typedef enum {
  VIXDISKLIB_DISK_MONOLITHIC_SPARSE = 1,
  VIXDISKLIB_DISK_MONOLITHIC_FLAT = 2,
  VIXDISKLIB_DISK_SPLIT_SPARSE = 3,
  VIXDISKLIB_DISK_SPLIT_FLAT = 4,
  VIXDISKLIB_DISK_VMFS_FLAT = 5,
  VIXDISKLIB_DISK_STREAM_OPTIMIZED = 6,
  VIXDISKLIB_DISK_VMFS_THIN = 7,
  VIXDISKLIB_DISK_VMFS_SPARSE = 8,
  VIXDISKLIB_DISK_UNKNOWN = 256
} VixDiskLibDiskType;

typedef enum {
  VIXDISKLIB_ADAPTER_IDE = 1,
  VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC = 2,
  VIXDISKLIB_ADAPTER_SCSI_LSILOGIC = 3,
  VIXDISKLIB_ADAPTER_UNKNOWN = 256
} VixDiskLibAdapterType;

#define VIXDISKLIB_HWVERSION_WORKSTATION_4 3
#define VIXDISKLIB_HWVERSION_WORKSTATION_5 4
#define VIXDISKLIB_HWVERSION_WORKSTATION_6 6
#define VIXDISKLIB_HWVERSION_ESX30 VIXDISKLIB_HWVERSION_WORKSTATION_5
#define VIXDISKLIB_HWVERSION_ESX4X 7
#define VIXDISKLIB_HWVERSION_ESX50 8
#define VIXDISKLIB_HWVERSION_ESX51 9
#define VIXDISKLIB_HWVERSION_ESX55 10
#define VIXDISKLIB_HWVERSION_ESX60 11
#define VIXDISKLIB_HWVERSION_ESX65 13
#define VIXDISKLIB_HWVERSION_CURRENT VIXDISKLIB_HWVERSION_ESX65

/* ---- Structures (VDDK 7.0 layouts, x86_64) ------------------------------------------------ */

typedef struct VixDiskLibConnectParam* VixDiskLibConnection;
typedef struct VixDiskLibHandleStruct* VixDiskLibHandle;

typedef struct {
  char* userName;
  char* password;
} VixDiskLibUidPasswdCreds;

typedef struct {
  char* cookie;
  char* userName;
  char* key;
} VixDiskLibSessionIdCreds;

struct VixDiskLibTicketIdCreds;

typedef union {
  VixDiskLibUidPasswdCreds uid;
  VixDiskLibSessionIdCreds sessionId;
  struct VixDiskLibTicketIdCreds* ticketId;
} VixDiskLibCreds;

typedef struct {
  char* id;
  char* datastoreMoRef;
  char* ssId;
} VixDiskLibVStorageObjectSpec;

struct VixDiskLibConnectParamsState;

typedef struct {
  char* vmxSpec;          /* "moref=vm-42" for a VM; NULL for local disks */
  char* serverName;       /* vCenter or ESXi host; NULL for local disks */
  char* thumbPrint;       /* server certificate SHA-1 (or SHA-256) thumbprint, colon hex */
  long privateUse;        /* ignored */
  VixDiskLibCredType credType;
  VixDiskLibCreds creds;
  uint32 port;            /* HTTPS port; 0 means 443 */
  uint32 nfcHostPort;     /* NFC port for nbd/nbdssl instead of the ticket's; 0: the ticket's */
  char* vimApiVer;        /* not used */
  char reserved[8];       /* internal */
  struct VixDiskLibConnectParamsState* state; /* internal: owned-strings marker */
  union {
    VixDiskLibVStorageObjectSpec vStorageObjSpec;
  } spec;
  VixDiskLibSpecType specType;
} VixDiskLibConnectParams;

typedef struct {
  uint32 cylinders;
  uint32 heads;
  uint32 sectors;
} VixDiskLibGeometry;

typedef struct {
  VixDiskLibGeometry biosGeo;
  VixDiskLibGeometry physGeo;
  VixDiskLibSectorType capacity;
  VixDiskLibAdapterType adapterType;
  int numLinks;
  char* parentFileNameHint;
  char* uuid;
  uint32 logicalSectorSize;
  uint32 physicalSectorSize;
} VixDiskLibInfo;

typedef struct {
  VixDiskLibDiskType diskType;
  VixDiskLibAdapterType adapterType;
  uint16 hwVersion;
  VixDiskLibSectorType capacity;
  uint32 logicalSectorSize;
  uint32 physicalSectorSize;
} VixDiskLibCreateParams;

typedef struct {
  VixDiskLibSectorType offset;
  VixDiskLibSectorType length;
} VixDiskLibBlock;

typedef struct {
  uint32 numBlocks;
  VixDiskLibBlock blocks[1];
} VixDiskLibBlockList;

typedef void(VixDiskLibGenericLogFunc)(const char* fmt, va_list args);
typedef Bool (*VixDiskLibProgressFunc)(void* progressData, int percentCompleted);
typedef void (*VixDiskLibCompletionCB)(void* cbData, VixError result);

/* ---- Functions ---------------------------------------------------------------------------- */

VixError VixDiskLib_InitEx(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc* log,
                           VixDiskLibGenericLogFunc* warning, VixDiskLibGenericLogFunc* panic,
                           const char* libDir, const char* configFile);
VixError VixDiskLib_Init(uint32 majorVersion, uint32 minorVersion, VixDiskLibGenericLogFunc* log,
                         VixDiskLibGenericLogFunc* warning, VixDiskLibGenericLogFunc* panic,
                         const char* libDir);
void VixDiskLib_Exit(void);
const char* VixDiskLib_ListTransportModes(void);

char* VixDiskLib_GetErrorText(VixError err, const char* locale);
void VixDiskLib_FreeErrorText(char* errMsg);

VixDiskLibConnectParams* VixDiskLib_AllocateConnectParams(void);
void VixDiskLib_FreeConnectParams(VixDiskLibConnectParams* connectParams);
VixError VixDiskLib_GetConnectParams(const VixDiskLibConnection connection,
                                     VixDiskLibConnectParams** connectParams);

VixError VixDiskLib_ConnectEx(const VixDiskLibConnectParams* connectParams, Bool readOnly,
                              const char* snapshotRef, const char* transportModes,
                              VixDiskLibConnection* connection);
VixError VixDiskLib_Connect(const VixDiskLibConnectParams* connectParams,
                            VixDiskLibConnection* connection);
VixError VixDiskLib_Disconnect(VixDiskLibConnection connection);
VixError VixDiskLib_Cleanup(const VixDiskLibConnectParams* connectParams, uint32* numCleanedUp,
                            uint32* numRemaining);
VixError VixDiskLib_PrepareForAccess(const VixDiskLibConnectParams* connectParams,
                                     const char* identity);
VixError VixDiskLib_EndAccess(const VixDiskLibConnectParams* connectParams, const char* identity);

VixError VixDiskLib_Open(const VixDiskLibConnection connection, const char* path, uint32 flags,
                         VixDiskLibHandle* diskHandle);
VixError VixDiskLib_Close(VixDiskLibHandle diskHandle);
const char* VixDiskLib_GetTransportMode(VixDiskLibHandle diskHandle);
VixError VixDiskLib_GetInfo(VixDiskLibHandle diskHandle, VixDiskLibInfo** info);
void VixDiskLib_FreeInfo(VixDiskLibInfo* info);

VixError VixDiskLib_Read(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                         VixDiskLibSectorType numSectors, uint8* readBuffer);
VixError VixDiskLib_Write(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                          VixDiskLibSectorType numSectors, const uint8* writeBuffer);
VixError VixDiskLib_ReadAsync(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                              VixDiskLibSectorType numSectors, uint8* readBuffer,
                              VixDiskLibCompletionCB callback, void* callbackData);
VixError VixDiskLib_WriteAsync(VixDiskLibHandle diskHandle, VixDiskLibSectorType startSector,
                               VixDiskLibSectorType numSectors, const uint8* writeBuffer,
                               VixDiskLibCompletionCB callback, void* callbackData);
VixError VixDiskLib_Wait(VixDiskLibHandle diskHandle);
VixError VixDiskLib_Flush(VixDiskLibHandle diskHandle);

VixError VixDiskLib_QueryAllocatedBlocks(VixDiskLibHandle diskHandle,
                                         VixDiskLibSectorType startSector,
                                         VixDiskLibSectorType numSectors,
                                         VixDiskLibSectorType chunkSize,
                                         VixDiskLibBlockList** blockList);
VixError VixDiskLib_FreeBlockList(VixDiskLibBlockList* blockList);

VixError VixDiskLib_ReadMetadata(VixDiskLibHandle diskHandle, const char* key, char* buf,
                                 size_t bufLen, size_t* requiredLen);
VixError VixDiskLib_WriteMetadata(VixDiskLibHandle diskHandle, const char* key, const char* val);
VixError VixDiskLib_GetMetadataKeys(VixDiskLibHandle diskHandle, char* keys, size_t maxLen,
                                    size_t* requiredLen);

VixError VixDiskLib_Create(const VixDiskLibConnection connection, const char* path,
                           const VixDiskLibCreateParams* createParams,
                           VixDiskLibProgressFunc progressFunc, void* progressCallbackData);
VixError VixDiskLib_CreateChild(VixDiskLibHandle diskHandle, const char* childPath,
                                VixDiskLibDiskType diskType, VixDiskLibProgressFunc progressFunc,
                                void* progressCallbackData);
VixError VixDiskLib_Unlink(VixDiskLibConnection connection, const char* path);
VixError VixDiskLib_Grow(VixDiskLibConnection connection, const char* path,
                         VixDiskLibSectorType capacity, Bool updateGeometry,
                         VixDiskLibProgressFunc progressFunc, void* progressCallbackData);
VixError VixDiskLib_Shrink(VixDiskLibHandle diskHandle, VixDiskLibProgressFunc progressFunc,
                           void* progressCallbackData);
VixError VixDiskLib_Defragment(VixDiskLibHandle diskHandle, VixDiskLibProgressFunc progressFunc,
                               void* progressCallbackData);
VixError VixDiskLib_Rename(const char* srcFileName, const char* dstFileName);
VixError VixDiskLib_Clone(const VixDiskLibConnection dstConnection, const char* dstPath,
                          const VixDiskLibConnection srcConnection, const char* srcPath,
                          const VixDiskLibCreateParams* vixCreateParams,
                          VixDiskLibProgressFunc progressFunc, void* progressCallbackData,
                          Bool overWrite);
VixError VixDiskLib_IsAttachPossible(VixDiskLibHandle parent, VixDiskLibHandle child);
VixError VixDiskLib_Attach(VixDiskLibHandle parent, VixDiskLibHandle child);
VixError VixDiskLib_SpaceNeededForClone(VixDiskLibHandle diskHandle,
                                        VixDiskLibDiskType cloneDiskType, uint64* spaceNeeded);
VixError VixDiskLib_CheckRepair(const VixDiskLibConnection connection, const char* filename,
                                Bool repair);

#ifdef __cplusplus
}
#endif

/* clang-format on */

#endif /* VIXFS_VIXDISKLIB_H */
