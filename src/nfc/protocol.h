// VMware's NFC wire format as ESXi 8 speaks it (docs/reference/nfc.md §2-§3): the fixed 264-byte
// messages of the handshake, the 16-byte AIO frame header, and the payloads the client sends and
// reads. Little-endian throughout. Encoding is plain; every decoder checks lengths and names the
// field that is wrong, because the facts come from public descriptions, not a specification.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/endian.h"
#include "common/result.h"

namespace vix::nfc {

// --- The classic handshake ----------------------------------------------------------------------

constexpr size_t kClassicSize = 264;
enum ClassicType : uint32_t {
  kSessionComplete = 4,
  kClassicError = 20,
  kSessionParams = 33,
  kSessionParamsReply = 36,
  kClientRandom = 43,
  kVersion = 51,
  kAioSession = 52,
  kClientName = 54,
  kFeatures = 55,
};
constexpr uint32_t kClientVersion = 11;
constexpr uint32_t kMinServerVersion = 3;

using ClassicMessage = std::array<uint8_t, kClassicSize>;
// A zeroed message of `type` with u32 `values` at offsets 4, 8, ...
ClassicMessage classic_message(uint32_t type, std::initializer_list<uint32_t> values = {});
uint32_t classic_type(const ClassicMessage& m);
uint32_t classic_u32(const ClassicMessage& m, size_t offset);
// The text of a type-20 message: "error <type>/<code>: <text>".
std::string classic_error_text(const ClassicMessage& m);

// --- AIO frames ---------------------------------------------------------------------------------

constexpr uint32_t kAioMagic = 0xA100DA7A;
constexpr size_t kHeaderSize = 16;
enum AioType : uint32_t {
  kError = 1,
  kOpenSession = 2,
  kCloseSession = 3,
  kOpenFile = 4,
  kCloseFile = 5,
  kIo = 7,
  kSetSockOpts = 9,
  kDdbGet = 11,
  kQueryAllocated = 13,
  kSetResPool = 22,
};
std::string_view aio_type_name(uint32_t type);

struct Header {
  uint32_t type = 0;
  uint32_t size = 0;  // payload bytes, not counting an IO frame's "extra" data
  uint32_t op_id = 0;
};
std::array<uint8_t, kHeaderSize> encode_header(const Header& h);
// A wrong magic is a protocol violation (VIX_E_FAIL): the stream is out of step.
Result<Header> decode_header(const uint8_t* bytes, const std::string& where);

// How one fragment's bytes travel (the high half of the IO payload's second u64).
enum Compression : uint32_t { kNone = 0, kZlib = 1, kFastLz = 2, kSkipZ = 3 };
std::string_view compression_name(uint32_t c);

// The 44-byte payload of an IO request, of each read reply fragment and of a write's fragments.
constexpr size_t kIoSize = 44;
struct IoPayload {
  uint64_t handle = 0;           // 0 in read reply fragments
  bool read = false;             // low half of the u64 at 8
  uint32_t compression = 0;      // high half
  uint64_t offset = 0;           // byte offset of the whole request on the disk
  uint32_t total = 0;            // bytes of the whole request
  uint32_t fragment_offset = 0;  // within the request
  uint32_t fragment_length = 0;  // uncompressed bytes of this fragment
  uint32_t extra = 0;            // bytes on the wire after the payload
};
std::array<uint8_t, kIoSize> encode_io(const IoPayload& io);
IoPayload decode_io(const uint8_t* bytes);

// OPEN_FILE: 60 bytes, then the datastore path as extra.
constexpr size_t kOpenFileSize = 60;
constexpr uint32_t kFileTypeDisk = 2;
constexpr uint32_t kOpenReadOnly = 0x1e;
constexpr uint32_t kOpenReadWrite = 0x1a;
std::array<uint8_t, kOpenFileSize> encode_open_file(uint32_t path_len, bool read_only);
struct OpenFileReply {
  uint64_t handle = 0;
  uint32_t file_type = 0;
  uint32_t flags = 0;
  uint64_t capacity_bytes = 0;
  uint32_t sector_size = 512;
};
Result<OpenFileReply> decode_open_file(const std::vector<uint8_t>& payload,
                                       const std::string& where);

// QUERY_ALLOCATED_BLOCKS: 48 bytes; the reply is 48 bytes and a bitmap, one bit per chunk, least
// significant first, padded to 4 bytes.
constexpr size_t kQueryAllocatedSize = 48;
std::array<uint8_t, kQueryAllocatedSize> encode_query_allocated(uint64_t handle, uint64_t chunk,
                                                                uint64_t start, uint64_t count);
size_t allocation_bitmap_bytes(uint64_t count);

// An error reply (type 1): "u64 code, u32 0, u32 textLen, text" (less certain: the text is taken
// from the payload when it is there, else from `extra`). Unknown shapes still give their bytes.
struct ErrorReply {
  uint64_t code = 0;
  std::string text;
};
ErrorReply decode_error(const std::vector<uint8_t>& payload, const std::string& extra);
// How many text bytes follow a 16-byte error payload whose text is not inside it (0 otherwise).
uint32_t error_text_after(const std::vector<uint8_t>& payload);
// The host's "could not allocate" answer ("NFC error 5: Failed to allocate ..."): retried with
// smaller requests.
constexpr uint64_t kErrorAllocation = 5;

// --- Compression --------------------------------------------------------------------------------

// Decodes one fragment into out[0, length): zlib (a plain zlib stream of exactly `length` bytes)
// or SkipZ ({u32 total, u32 0, then (u32 offset, u32 length, bytes)...}, the gaps zero). Any
// inconsistency (runs past the end, a short or long stream) is an error naming it.
Result<void> decompress(uint32_t compression, const uint8_t* in, size_t in_len, uint8_t* out,
                        size_t length);
// SkipZ of a buffer (zero runs of at least `min_run` bytes skipped), for writes and the tests.
std::vector<uint8_t> skipz_compress(const uint8_t* in, size_t len, size_t min_run = 512);

}  // namespace vix::nfc
