#include "nfc/protocol.h"

#include <zlib.h>

#include <algorithm>
#include <climits>

namespace vix::nfc {

ClassicMessage classic_message(uint32_t type, std::initializer_list<uint32_t> values) {
  ClassicMessage m{};
  store_le32(m.data(), type);
  size_t offset = 4;
  for (uint32_t v : values) {
    store_le32(m.data() + offset, v);
    offset += 4;
  }
  return m;
}

uint32_t classic_type(const ClassicMessage& m) {
  return load_le32(m.data());
}

uint32_t classic_u32(const ClassicMessage& m, size_t offset) {
  return offset + 4 <= m.size() ? load_le32(m.data() + offset) : 0;
}

std::string classic_error_text(const ClassicMessage& m) {
  const uint32_t len = std::min<uint32_t>(classic_u32(m, 12), kClassicSize - 16);
  std::string text(reinterpret_cast<const char*>(m.data()) + 16, len);
  text.erase(std::find(text.begin(), text.end(), '\0'), text.end());
  return "error " + std::to_string(classic_u32(m, 4)) + "/" + std::to_string(classic_u32(m, 8)) +
         (text.empty() ? std::string() : ": " + text);
}

std::string_view aio_type_name(uint32_t type) {
  switch (type) {
    case kError:
      return "ERROR";
    case kOpenSession:
      return "OPEN_SESSION";
    case kCloseSession:
      return "CLOSE_SESSION";
    case kOpenFile:
      return "OPEN_FILE";
    case kCloseFile:
      return "CLOSE_FILE";
    case kIo:
      return "IO";
    case kSetSockOpts:
      return "SET_SOCK_OPTS";
    case kDdbGet:
      return "DDB_GET";
    case kQueryAllocated:
      return "QUERY_ALLOCATED_BLOCKS";
    case kSetResPool:
      return "SET_RES_POOL";
  }
  return "unknown";
}

std::array<uint8_t, kHeaderSize> encode_header(const Header& h) {
  std::array<uint8_t, kHeaderSize> b{};
  store_le32(b.data(), kAioMagic);
  store_le32(b.data() + 4, h.type);
  store_le32(b.data() + 8, h.size);
  store_le32(b.data() + 12, h.op_id);
  return b;
}

Result<Header> decode_header(const uint8_t* bytes, const std::string& where) {
  const uint32_t magic = load_le32(bytes);
  if (magic != kAioMagic) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08X", magic);
    return fail(VIX_E_FAIL, where + ": NFC protocol violation: bad frame magic " + hex +
                                " (expected 0xA100DA7A): the stream is out of step");
  }
  return Header{load_le32(bytes + 4), load_le32(bytes + 8), load_le32(bytes + 12)};
}

std::string_view compression_name(uint32_t c) {
  switch (c) {
    case kNone:
      return "none";
    case kZlib:
      return "zlib";
    case kFastLz:
      return "fastlz";
    case kSkipZ:
      return "skipz";
  }
  return "unknown";
}

std::array<uint8_t, kIoSize> encode_io(const IoPayload& io) {
  std::array<uint8_t, kIoSize> b{};
  store_le64(b.data(), io.handle);
  store_le32(b.data() + 8, io.read ? 1 : 0);
  store_le32(b.data() + 12, io.compression);
  store_le64(b.data() + 16, io.offset);
  store_le32(b.data() + 24, io.total);
  store_le32(b.data() + 28, io.fragment_offset);
  store_le32(b.data() + 32, io.fragment_length);
  store_le32(b.data() + 36, io.extra);
  return b;
}

IoPayload decode_io(const uint8_t* b) {
  IoPayload io;
  io.handle = load_le64(b);
  io.read = load_le32(b + 8) == 1;
  io.compression = load_le32(b + 12);
  io.offset = load_le64(b + 16);
  io.total = load_le32(b + 24);
  io.fragment_offset = load_le32(b + 28);
  io.fragment_length = load_le32(b + 32);
  io.extra = load_le32(b + 36);
  return io;
}

std::array<uint8_t, kOpenFileSize> encode_open_file(uint32_t path_len, bool read_only) {
  std::array<uint8_t, kOpenFileSize> b{};
  store_le32(b.data(), path_len);
  store_le32(b.data() + 16, kFileTypeDisk);
  store_le32(b.data() + 20, read_only ? kOpenReadOnly : kOpenReadWrite);
  return b;
}

Result<OpenFileReply> decode_open_file(const std::vector<uint8_t>& p, const std::string& where) {
  if (p.size() < 40) {
    return fail(VIX_E_HOST_TCP_CONN_LOST, where + ": OPEN_FILE reply of " +
                                              std::to_string(p.size()) + " bytes (expected 60)");
  }
  OpenFileReply r;
  r.handle = load_le64(p.data() + 8);
  r.file_type = load_le32(p.data() + 16);
  r.flags = load_le32(p.data() + 20);
  r.capacity_bytes = load_le64(p.data() + 28);
  r.sector_size = load_le32(p.data() + 36);
  if (r.sector_size == 0) r.sector_size = 512;
  if (r.file_type != kFileTypeDisk) {
    return fail(VIX_E_FILE_ERROR, where + ": OPEN_FILE answered file type " +
                                      std::to_string(r.file_type) + ", not a disk (2)");
  }
  if (r.sector_size != 512) {
    return fail(VIX_E_NOT_SUPPORTED, where + ": sector size " + std::to_string(r.sector_size) +
                                         " (only 512 is supported)");
  }
  return r;
}

std::array<uint8_t, kQueryAllocatedSize> encode_query_allocated(uint64_t handle, uint64_t chunk,
                                                                uint64_t start, uint64_t count) {
  std::array<uint8_t, kQueryAllocatedSize> b{};
  store_le64(b.data(), handle);
  store_le64(b.data() + 16, chunk);
  store_le64(b.data() + 24, start);
  store_le64(b.data() + 32, count);
  return b;
}

size_t allocation_bitmap_bytes(uint64_t count) {
  return size_t((count + 31) / 32 * 4);
}

ErrorReply decode_error(const std::vector<uint8_t>& p, const std::string& extra) {
  ErrorReply e;
  if (p.size() >= 16) {
    e.code = load_le64(p.data());
    const uint32_t len = load_le32(p.data() + 12);
    if (p.size() > 16) {
      e.text.assign(reinterpret_cast<const char*>(p.data()) + 16,
                    std::min<size_t>(len == 0 ? p.size() - 16 : len, p.size() - 16));
    } else {
      e.text = extra;
    }
  } else {
    e.text.assign(p.begin(), p.end());
  }
  e.text.erase(std::find(e.text.begin(), e.text.end(), '\0'), e.text.end());
  while (!e.text.empty() && (e.text.back() == '\n' || e.text.back() == '\r')) e.text.pop_back();
  return e;
}

uint32_t error_text_after(const std::vector<uint8_t>& p) {
  if (p.size() != 16) return 0;
  return std::min<uint32_t>(load_le32(p.data() + 12), 64 * 1024);
}

namespace {

Result<void> inflate_exact(const uint8_t* in, size_t in_len, uint8_t* out, size_t length) {
  if (in_len > UINT_MAX || length > UINT_MAX) {
    return fail(VIX_E_HOST_TCP_CONN_LOST, "zlib fragment too large");
  }
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return fail(VIX_E_OUT_OF_MEMORY, "zlib: inflateInit failed");
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(in_len);
  z.next_out = out;
  z.avail_out = static_cast<uInt>(length);
  const int rc = inflate(&z, Z_FINISH);
  const size_t produced = length - z.avail_out;
  const bool trailing = z.avail_in != 0;
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != length || trailing) {
    return fail(VIX_E_HOST_TCP_CONN_LOST,
                "zlib fragment does not inflate to its " + std::to_string(length) + " bytes (" +
                    (rc == Z_STREAM_END ? std::to_string(produced) + " bytes" +
                                              (trailing ? ", trailing input" : "")
                                        : std::string("zlib: ") + (z.msg ? z.msg : "truncated")) +
                    ")");
  }
  return ok();
}

Result<void> skipz_decode(const uint8_t* in, size_t in_len, uint8_t* out, size_t length) {
  auto bad = [&](const std::string& why) {
    return fail(VIX_E_HOST_TCP_CONN_LOST, "SkipZ fragment: " + why);
  };
  if (in_len < 8) return bad("shorter than its 8-byte header");
  if (load_le32(in) != length) {
    return bad("total " + std::to_string(load_le32(in)) + " is not the fragment's " +
               std::to_string(length) + " bytes");
  }
  std::fill(out, out + length, 0);
  size_t pos = 8;
  uint64_t last_end = 0;
  while (pos < in_len) {
    if (in_len - pos < 8) return bad("a run header cut short at byte " + std::to_string(pos));
    const uint64_t off = load_le32(in + pos), len = load_le32(in + pos + 4);
    pos += 8;
    if (off < last_end || off + len > length) {
      return bad("run [" + std::to_string(off) + ", +" + std::to_string(len) +
                 ") overlaps or passes the fragment's end");
    }
    if (len > in_len - pos)
      return bad("run at " + std::to_string(off) + " has fewer bytes than " + std::to_string(len));
    std::copy_n(in + pos, len, out + off);
    pos += len;
    last_end = off + len;
  }
  return ok();
}

}  // namespace

Result<void> decompress(uint32_t compression, const uint8_t* in, size_t in_len, uint8_t* out,
                        size_t length) {
  switch (compression) {
    case kNone:
      if (in_len != length) {
        return fail(VIX_E_HOST_TCP_CONN_LOST, "uncompressed fragment of " + std::to_string(in_len) +
                                                  " bytes for " + std::to_string(length));
      }
      std::copy_n(in, length, out);
      return ok();
    case kZlib:
      return inflate_exact(in, in_len, out, length);
    case kSkipZ:
      return skipz_decode(in, in_len, out, length);
  }
  return fail(VIX_E_NOT_SUPPORTED,
              "fragment compressed with " + std::string(compression_name(compression)) + " (" +
                  std::to_string(compression) + "), which vixfs cannot decode");
}

std::vector<uint8_t> skipz_compress(const uint8_t* in, size_t len, size_t min_run) {
  std::vector<uint8_t> out(8);
  store_le32(out.data(), uint32_t(len));
  size_t i = 0;
  while (i < len) {
    // The next zero run long enough to skip ends the current data run.
    size_t start = i, zeros = 0, j = i;
    for (; j < len; j++) {
      zeros = in[j] == 0 ? zeros + 1 : 0;
      if (zeros >= min_run) break;
    }
    size_t data_end = j < len ? j + 1 - zeros : len;
    if (data_end > start) {
      uint8_t h[8];
      store_le32(h, uint32_t(start));
      store_le32(h + 4, uint32_t(data_end - start));
      out.insert(out.end(), h, h + 8);
      out.insert(out.end(), in + start, in + data_end);
    }
    i = data_end;
    while (i < len && in[i] == 0) i++;
  }
  return out;
}

}  // namespace vix::nfc
