// NBD wire constants and big-endian helpers, from the protocol (NBD's doc/proto.md). Everything on
// the wire is network byte order.
#pragma once

#include <cstdint>
#include <string>

#include "vixDiskLib.h"

namespace vix::nbd {

// --- handshake -------------------------------------------------------------------------------
constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;       // "NBDMAGIC"
constexpr uint64_t kIHaveOpt = 0x49484156454f5054ull;       // "IHAVEOPT"
constexpr uint64_t kOptReplyMagic = 0x3e889045565a9ull;     // option replies
constexpr uint64_t kOldstyleMagic = 0x0000420281861253ull;  // recognised only to refuse it

// Server handshake flags.
constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
constexpr uint16_t kFlagNoZeroes = 1u << 1;
// Client flags.
constexpr uint32_t kClientFixedNewstyle = 1u << 0;
constexpr uint32_t kClientNoZeroes = 1u << 1;

// Options.
constexpr uint32_t kOptExportName = 1;
constexpr uint32_t kOptAbort = 2;
constexpr uint32_t kOptList = 3;
constexpr uint32_t kOptStartTls = 5;
constexpr uint32_t kOptInfo = 6;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kOptStructuredReply = 8;
constexpr uint32_t kOptListMetaContext = 9;
constexpr uint32_t kOptSetMetaContext = 10;

// Option reply types.
constexpr uint32_t kRepAck = 1;
constexpr uint32_t kRepServer = 2;
constexpr uint32_t kRepInfo = 3;
constexpr uint32_t kRepMetaContext = 4;
constexpr uint32_t kRepFlagError = 1u << 31;
constexpr uint32_t kRepErrUnsup = kRepFlagError | 1;
constexpr uint32_t kRepErrPolicy = kRepFlagError | 2;
constexpr uint32_t kRepErrInvalid = kRepFlagError | 3;
constexpr uint32_t kRepErrPlatform = kRepFlagError | 4;
constexpr uint32_t kRepErrTlsReqd = kRepFlagError | 5;
constexpr uint32_t kRepErrUnknown = kRepFlagError | 6;
constexpr uint32_t kRepErrShutdown = kRepFlagError | 7;
constexpr uint32_t kRepErrBlockSizeReqd = kRepFlagError | 8;
constexpr uint32_t kRepErrTooBig = kRepFlagError | 9;

// NBD_INFO_* in NBD_REP_INFO replies and NBD_OPT_GO requests.
constexpr uint16_t kInfoExport = 0;
constexpr uint16_t kInfoName = 1;
constexpr uint16_t kInfoDescription = 2;
constexpr uint16_t kInfoBlockSize = 3;

// Transmission flags (NBD_FLAG_*).
constexpr uint16_t kFlagHasFlags = 1u << 0;
constexpr uint16_t kFlagReadOnly = 1u << 1;
constexpr uint16_t kFlagSendFlush = 1u << 2;
constexpr uint16_t kFlagSendFua = 1u << 3;
constexpr uint16_t kFlagRotational = 1u << 4;
constexpr uint16_t kFlagSendTrim = 1u << 5;
constexpr uint16_t kFlagSendWriteZeroes = 1u << 6;
constexpr uint16_t kFlagSendDf = 1u << 7;
constexpr uint16_t kFlagCanMultiConn = 1u << 8;
constexpr uint16_t kFlagSendResize = 1u << 9;
constexpr uint16_t kFlagSendCache = 1u << 10;
constexpr uint16_t kFlagSendFastZero = 1u << 11;

// --- transmission ----------------------------------------------------------------------------
constexpr uint32_t kRequestMagic = 0x25609513u;
constexpr uint32_t kSimpleReplyMagic = 0x67446698u;
constexpr uint32_t kStructuredReplyMagic = 0x668e33efu;

constexpr uint16_t kCmdRead = 0;
constexpr uint16_t kCmdWrite = 1;
constexpr uint16_t kCmdDisc = 2;
constexpr uint16_t kCmdFlush = 3;
constexpr uint16_t kCmdTrim = 4;
constexpr uint16_t kCmdCache = 5;
constexpr uint16_t kCmdWriteZeroes = 6;
constexpr uint16_t kCmdBlockStatus = 7;

constexpr uint16_t kCmdFlagFua = 1u << 0;
constexpr uint16_t kCmdFlagNoHole = 1u << 1;
constexpr uint16_t kCmdFlagDf = 1u << 2;
constexpr uint16_t kCmdFlagReqOne = 1u << 3;
constexpr uint16_t kCmdFlagFastZero = 1u << 4;

constexpr uint16_t kReplyFlagDone = 1u << 0;
constexpr uint16_t kReplyTypeNone = 0;
constexpr uint16_t kReplyTypeOffsetData = 1;
constexpr uint16_t kReplyTypeOffsetHole = 2;
constexpr uint16_t kReplyTypeBlockStatus = 5;
constexpr uint16_t kReplyTypeFlagError = 1u << 15;
constexpr uint16_t kReplyTypeError = kReplyTypeFlagError | 1;
constexpr uint16_t kReplyTypeErrorOffset = kReplyTypeFlagError | 2;

// base:allocation extent flags.
constexpr uint32_t kStateHole = 1u << 0;
constexpr uint32_t kStateZero = 1u << 1;

// Error values in replies (errno-like, fixed by the protocol rather than the host's errno.h).
constexpr uint32_t kEPerm = 1;
constexpr uint32_t kEIo = 5;
constexpr uint32_t kENoMem = 12;
constexpr uint32_t kEInval = 22;
constexpr uint32_t kENoSpc = 28;
constexpr uint32_t kEOverflow = 75;
constexpr uint32_t kENotSup = 95;
constexpr uint32_t kEShutdown = 108;

constexpr uint16_t kDefaultPort = 10809;
// The protocol's own ceiling for strings (export names, messages).
constexpr size_t kMaxString = 4096;
// Largest option reply accepted during the handshake; real replies are a few hundred bytes.
constexpr uint32_t kMaxOptionReply = 64u << 10;
// Largest payload a server may send or accept when it gives no NBD_INFO_BLOCK_SIZE.
constexpr uint32_t kDefaultMaxBlock = 32u << 20;

// Names for messages: "NBD_OPT_GO", "NBD_REP_ERR_UNKNOWN", "NBD_CMD_READ", "EIO".
std::string option_name(uint32_t option);
std::string option_reply_name(uint32_t reply);
std::string command_name(uint16_t command);
std::string errno_name(uint32_t error);
// The VixError for an error a server sent in a reply (EIO, ENOSPC, ...).
VixError errno_to_vix(uint32_t error);
// A server's text (error message, export name) fit for a message: bounded, control bytes escaped.
std::string printable(const std::string& text);

// --- big-endian helpers ----------------------------------------------------------------------
inline void put_be16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
inline void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}
inline void put_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = uint8_t(v);
}
inline uint16_t get_be16(const uint8_t* p) {
  return uint16_t((p[0] << 8) | p[1]);
}
inline uint32_t get_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}
inline uint64_t get_be64(const uint8_t* p) {
  return (uint64_t(get_be32(p)) << 32) | get_be32(p + 4);
}

}  // namespace vix::nbd
