#include "nbd/protocol.h"

#include <algorithm>
#include <cstdio>

namespace vix::nbd {

namespace {
std::string numbered(const char* prefix, uint64_t v) {
  return prefix + std::to_string(v);
}
}  // namespace

std::string option_name(uint32_t option) {
  switch (option) {
    case kOptExportName:
      return "NBD_OPT_EXPORT_NAME";
    case kOptAbort:
      return "NBD_OPT_ABORT";
    case kOptList:
      return "NBD_OPT_LIST";
    case kOptStartTls:
      return "NBD_OPT_STARTTLS";
    case kOptInfo:
      return "NBD_OPT_INFO";
    case kOptGo:
      return "NBD_OPT_GO";
    case kOptStructuredReply:
      return "NBD_OPT_STRUCTURED_REPLY";
    case kOptListMetaContext:
      return "NBD_OPT_LIST_META_CONTEXT";
    case kOptSetMetaContext:
      return "NBD_OPT_SET_META_CONTEXT";
  }
  return numbered("option ", option);
}

std::string option_reply_name(uint32_t reply) {
  switch (reply) {
    case kRepAck:
      return "NBD_REP_ACK";
    case kRepServer:
      return "NBD_REP_SERVER";
    case kRepInfo:
      return "NBD_REP_INFO";
    case kRepMetaContext:
      return "NBD_REP_META_CONTEXT";
    case kRepErrUnsup:
      return "NBD_REP_ERR_UNSUP";
    case kRepErrPolicy:
      return "NBD_REP_ERR_POLICY";
    case kRepErrInvalid:
      return "NBD_REP_ERR_INVALID";
    case kRepErrPlatform:
      return "NBD_REP_ERR_PLATFORM";
    case kRepErrTlsReqd:
      return "NBD_REP_ERR_TLS_REQD";
    case kRepErrUnknown:
      return "NBD_REP_ERR_UNKNOWN";
    case kRepErrShutdown:
      return "NBD_REP_ERR_SHUTDOWN";
    case kRepErrBlockSizeReqd:
      return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case kRepErrTooBig:
      return "NBD_REP_ERR_TOO_BIG";
  }
  if (reply & kRepFlagError) return numbered("NBD_REP_ERR ", reply & ~kRepFlagError);
  return numbered("reply type ", reply);
}

std::string command_name(uint16_t command) {
  switch (command) {
    case kCmdRead:
      return "NBD_CMD_READ";
    case kCmdWrite:
      return "NBD_CMD_WRITE";
    case kCmdDisc:
      return "NBD_CMD_DISC";
    case kCmdFlush:
      return "NBD_CMD_FLUSH";
    case kCmdTrim:
      return "NBD_CMD_TRIM";
    case kCmdCache:
      return "NBD_CMD_CACHE";
    case kCmdWriteZeroes:
      return "NBD_CMD_WRITE_ZEROES";
    case kCmdBlockStatus:
      return "NBD_CMD_BLOCK_STATUS";
  }
  return numbered("command ", command);
}

std::string errno_name(uint32_t error) {
  switch (error) {
    case kEPerm:
      return "EPERM";
    case kEIo:
      return "EIO";
    case kENoMem:
      return "ENOMEM";
    case kEInval:
      return "EINVAL";
    case kENoSpc:
      return "ENOSPC";
    case kEOverflow:
      return "EOVERFLOW";
    case kENotSup:
      return "ENOTSUP";
    case kEShutdown:
      return "ESHUTDOWN";
  }
  return numbered("error ", error);
}

VixError errno_to_vix(uint32_t error) {
  switch (error) {
    case kEPerm:
      return VIX_E_FILE_READ_ONLY;
    case kENoMem:
      return VIX_E_OUT_OF_MEMORY;
    case kEInval:
      return VIX_E_INVALID_ARG;
    case kENoSpc:
      return VIX_E_DISK_FULL;
    case kEOverflow:
      return VIX_E_DISK_OUTOFRANGE;
    case kENotSup:
      return VIX_E_NOT_SUPPORTED;
    // The server is going away: the owner reconnects as for a dropped connection.
    case kEShutdown:
      return VIX_E_HOST_TCP_CONN_LOST;
  }
  return VIX_E_FILE_ERROR;  // EIO and anything a server invents
}

std::string printable(const std::string& text) {
  std::string out;
  size_t n = std::min<size_t>(text.size(), 512);
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out += char(c);
    }
  }
  if (text.size() > n) out += "...";
  return out;
}

}  // namespace vix::nbd
