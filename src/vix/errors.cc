#include "vix/errors.h"

#include <array>
#include <cstddef>
#include <cstdint>

namespace vix {

namespace {

struct ErrorEntry {
  uint32_t code;
  const char* text;
};

// Sorted by code (binary search below).
constexpr ErrorEntry kErrors[] = {
    {VIX_OK, "The operation was successful."},
    {VIX_E_FAIL, "Unknown error."},
    {VIX_E_OUT_OF_MEMORY, "Memory allocation failed. Out of memory."},
    {VIX_E_INVALID_ARG, "One of the parameters was invalid."},
    {VIX_E_FILE_NOT_FOUND, "A file was not found."},
    {VIX_E_OBJECT_IS_BUSY,
     "This function cannot be performed because the handle is executing another function."},
    {VIX_E_NOT_SUPPORTED, "The operation is not supported."},
    {VIX_E_FILE_ERROR, "A file access error occurred on the host or guest operating system."},
    {VIX_E_DISK_FULL,
     "An error occurred while writing a file; the disk is full. Data has not been saved."},
    {VIX_E_INCORRECT_FILE_TYPE, "An error occurred while accessing a file: wrong file type."},
    {VIX_E_CANCELLED, "The operation was canceled."},
    {VIX_E_FILE_READ_ONLY, "The file is write-protected."},
    {VIX_E_FILE_ALREADY_EXISTS, "The file already exists."},
    {VIX_E_FILE_ACCESS_ERROR, "You do not have access rights to this file."},
    {VIX_E_REQUIRES_LARGE_FILES, "The file system does not support sufficiently large files."},
    {VIX_E_FILE_ALREADY_LOCKED, "The file is already in use."},
    {VIX_E_VMDB, "The system returned an error. Communication with the host may have been lost."},
    {VIX_E_NOT_SUPPORTED_ON_REMOTE_OBJECT, "The command is not supported on remote objects."},
    {VIX_E_FILE_TOO_BIG, "The file is too big for the file system."},
    {VIX_E_FILE_NAME_INVALID, "The file name is not valid."},
    {VIX_E_ALREADY_EXISTS, "The object already exists."},
    {VIX_E_BUFFER_TOOSMALL, "The buffer is too small."},
    {VIX_E_OBJECT_NOT_FOUND, "The request refers to an object that does not exist."},
    {VIX_E_HOST_NOT_CONNECTED, "Unable to connect to the host."},
    {VIX_E_INVALID_UTF8_STRING, "The string parameter has incorrect encoding."},
    {VIX_E_UNFINISHED_JOB, "The operation is still in progress."},
    {VIX_E_NEED_KEY, "A key is required for this operation."},
    {VIX_E_OPERATION_ALREADY_IN_PROGRESS, "An operation of this type is already in progress."},
    {VIX_E_LICENSE, "License error."},
    {VIX_E_VM_HOST_DISCONNECTED, "The host is disconnected."},
    {VIX_E_AUTHENTICATION_FAIL, "Authentication failed."},
    {VIX_E_HOST_CONNECTION_LOST, "The connection to the host was lost."},
    {VIX_E_DUPLICATE_NAME, "Another object is using this name."},
    {VIX_E_ARGUMENT_TOO_BIG, "One of the parameters was too big."},
    {VIX_E_INVALID_HANDLE, "The handle is not a valid VixDiskLib object."},
    {VIX_E_NOT_SUPPORTED_ON_HANDLE_TYPE, "The operation is not supported on this type of handle."},
    {VIX_E_TOO_MANY_HANDLES, "Too many handles are open."},
    {VIX_E_NOT_FOUND, "Invalid file. A required section of the file is missing."},
    {VIX_E_TYPE_MISMATCH, "Invalid file. An object has the wrong type."},
    {VIX_E_INVALID_XML, "Invalid file. The contents may be corrupt."},
    {VIX_E_VM_NOT_FOUND, "The virtual machine cannot be found."},
    {VIX_E_HOST_DISK_INVALID_VALUE, "Invalid value."},
    {VIX_E_HOST_DISK_SECTORSIZE, "Disk sector size check failed."},
    {VIX_E_HOST_FILE_ERROR_EOF, "Read beyond the end of file."},
    {VIX_E_HOST_NETBLKDEV_HANDSHAKE, "Error in protocol."},
    {VIX_E_HOST_SOCKET_CREATION_ERROR, "Unable to create a socket."},
    {VIX_E_HOST_SERVER_NOT_FOUND, "The specified server could not be contacted."},
    {VIX_E_HOST_NETWORK_CONN_REFUSED, "The server refused the connection."},
    {VIX_E_HOST_TCP_SOCKET_ERROR, "Error in transmission."},
    {VIX_E_HOST_TCP_CONN_LOST, "The server closed the connection."},
    {VIX_E_HOST_NBD_HASHFILE_VOLUME, "The volume for the NBD hash file could not be found."},
    {VIX_E_HOST_NBD_HASHFILE_INIT, "Failed to initialize the NBD hash file."},
    {VIX_E_DISK_INVAL, "One of the parameters supplied is invalid, or the disk is corrupted."},
    {VIX_E_DISK_NOINIT, "Disk library not initialized (call VixDiskLib_InitEx first)."},
    {VIX_E_DISK_NOIO, "The called function requires the virtual disk to be opened for I/O."},
    {VIX_E_DISK_PARTIALCHAIN,
     "The called function cannot be performed on partial chains. Open the parent virtual disk."},
    {VIX_E_DISK_NEEDSREPAIR, "The specified virtual disk needs repair."},
    {VIX_E_DISK_OUTOFRANGE,
     "You have requested access to an area of the virtual disk that is out of bounds."},
    {VIX_E_DISK_CID_MISMATCH,
     "The parent virtual disk has been modified since the child was created. The content ID of "
     "the parent virtual disk does not match the corresponding parent content ID in the child."},
    {VIX_E_DISK_CANTSHRINK,
     "The specified virtual disk cannot be shrunk because it is not the parent disk."},
    {VIX_E_DISK_PARTMISMATCH,
     "The partition table on the physical disk has changed since the disk was created."},
    {VIX_E_DISK_UNSUPPORTEDDISKVERSION,
     "The version of the virtual disk is newer than the version supported by this program."},
    {VIX_E_DISK_OPENPARENT, "The parent of this virtual disk could not be opened."},
    {VIX_E_DISK_NOTSUPPORTED, "The specified feature isn't supported by this version."},
    {VIX_E_DISK_NEEDKEY, "One or more required keys were not provided."},
    {VIX_E_DISK_NOKEYOVERRIDE,
     "Won't create unencrypted child of encrypted disk without explicit request."},
    {VIX_E_DISK_NOTENCRYPTED, "Not an encrypted disk."},
    {VIX_E_DISK_NOKEY, "No keys were supplied for encrypting the disk."},
    {VIX_E_DISK_INVALIDPARTITIONTABLE, "The partition table is invalid."},
    {VIX_E_DISK_NOTNORMAL, "Only sparse extents with embedded descriptors may be encrypted."},
    {VIX_E_DISK_NOTENCDESC, "Not an encrypted descriptor file."},
    {VIX_E_DISK_NEEDVMFS, "The file system is not VMFS."},
    {VIX_E_DISK_RAWTOOBIG, "The physical disk is too big."},
    {VIX_E_DISK_TOOMANYOPENFILES, "The host's limit for open files has been exceeded."},
    {VIX_E_DISK_TOOMANYREDO, "Too many levels of redo logs."},
    {VIX_E_DISK_RAWTOOSMALL, "The physical disk is too small."},
    {VIX_E_DISK_INVALIDCHAIN,
     "Invalid disk chain: cannot mix hosted and managed style disks in the same chain."},
    {VIX_E_DISK_KEY_NOTFOUND, "The specified key was not found in the disk metadata."},
    {VIX_E_DISK_SUBSYSTEM_INIT_FAIL, "The disk library subsystem could not be initialized."},
    {VIX_E_DISK_INVALID_CONNECTION, "Invalid connection handle."},
    {VIX_E_DISK_ENCODING, "Disk encoding error."},
    {VIX_E_DISK_CANTREPAIR, "The disk is corrupted and unrepairable."},
    {VIX_E_DISK_INVALIDDISK, "The specified file is not a virtual disk."},
    {VIX_E_DISK_NOLICENSE, "The host is not licensed for this feature."},
    {VIX_E_DISK_NODEVICE, "The device does not exist."},
    {VIX_E_DISK_UNSUPPORTEDDEVICE, "The operation is not supported on this type of device."},
    {VIX_E_DISK_CAPACITY_MISMATCH,
     "The parent virtual disk's capacity is not the same as the child's capacity."},
    {VIX_E_DISK_PARENT_NOTALLOWED, "The disk cannot be attached to this parent."},
    {VIX_E_DISK_ATTACH_ROOTLINK, "A root link cannot be attached to a disk chain."},
    {VIX_E_CANNOT_CONNECT_TO_HOST, "Cannot connect to host."},
    {VIX_E_NOT_FOR_REMOTE_HOST, "Only a local host can be specified for this operation."},
    {VIX_E_INVALID_HOSTNAME_SPECIFICATION, "The host name specification is malformed."},
    {VIX_ASYNC, "The asynchronous operation has been started."},
    {VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED,
     "Synchronous and asynchronous I/O on the same disk handle is not allowed."},
};

constexpr bool sorted() {
  for (size_t i = 1; i < std::size(kErrors); ++i)
    if (kErrors[i - 1].code >= kErrors[i].code) return false;
  return true;
}
static_assert(sorted(), "kErrors must be sorted by code");

// Why a few: a thread rarely has more than one or two recent failures worth explaining, and the
// store must stay small however many errors a long-lived thread sees.
constexpr size_t kRememberedCodes = 8;
constexpr size_t kMaxDetail = 400;

struct Detail {
  uint32_t code = 0;
  std::string message;
};

struct DetailStore {
  std::array<Detail, kRememberedCodes> slots;
  size_t next = 0;
};

DetailStore& details() {
  thread_local DetailStore store;
  return store;
}

}  // namespace

std::string_view base_error_text(VixError err) {
  const uint32_t code = static_cast<uint32_t>(VIX_ERROR_CODE(err));
  size_t lo = 0, hi = std::size(kErrors);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (kErrors[mid].code < code) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < std::size(kErrors) && kErrors[lo].code == code) return kErrors[lo].text;
  return "Unknown error.";
}

void note_error_detail(const Error& err) {
  if (err.message.empty()) return;
  const uint32_t code = static_cast<uint32_t>(VIX_ERROR_CODE(err.code));
  if (code == VIX_OK) return;
  std::string msg =
      err.message.size() > kMaxDetail ? err.message.substr(0, kMaxDetail) + "..." : err.message;
  DetailStore& store = details();
  for (Detail& d : store.slots) {
    if (d.code == code && !d.message.empty()) {
      d.message = std::move(msg);
      return;
    }
  }
  Detail& slot = store.slots[store.next];
  store.next = (store.next + 1) % kRememberedCodes;
  slot.code = code;
  slot.message = std::move(msg);
}

void clear_error_details() {
  DetailStore& store = details();
  for (Detail& d : store.slots) d = Detail{};
  store.next = 0;
}

std::string error_text(VixError err) {
  const uint32_t code = static_cast<uint32_t>(VIX_ERROR_CODE(err));
  std::string text(base_error_text(err));
  if (code == VIX_OK || code == VIX_ASYNC) return text;
  if (code != VIX_E_FAIL && text == base_error_text(VIX_E_FAIL)) {
    text = "Unknown error (code " + std::to_string(code) + ").";
  }
  for (const Detail& d : details().slots) {
    if (d.code == code && !d.message.empty()) {
      if (!text.empty() && text.back() == '.') text.pop_back();
      text += " (" + d.message + ")";
      break;
    }
  }
  return text;
}

}  // namespace vix
