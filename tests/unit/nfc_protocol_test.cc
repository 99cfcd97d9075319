// The NFC wire format (src/nfc/protocol.h) against byte layouts written out by hand from
// docs/reference/nfc.md, and the decoders against hostile input.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <random>
#include <vector>

#include "nfc/protocol.h"

using namespace vix::nfc;
using vix::load_le32;
using vix::load_le64;
using vix::store_le32;
using vix::store_le64;

namespace {

std::vector<uint8_t> le32(std::initializer_list<uint32_t> values) {
  std::vector<uint8_t> out;
  for (uint32_t v : values) {
    for (int i = 0; i < 4; i++) out.push_back(uint8_t(v >> (8 * i)));
  }
  return out;
}

}  // namespace

TEST(NfcProtocol, HeaderIsMagicTypeSizeOpIdLittleEndian) {
  auto b = encode_header({7, 44, 3});
  const std::vector<uint8_t> expected = {0x7a, 0xda, 0x00, 0xa1, 7, 0, 0, 0,
                                         44,   0,    0,    0,    3, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(b.begin(), b.end()), expected);
  auto h = decode_header(b.data(), "t");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->type, 7u);
  EXPECT_EQ(h->size, 44u);
  EXPECT_EQ(h->op_id, 3u);
}

TEST(NfcProtocol, BadMagicNamesWhatCame) {
  uint8_t b[16] = {0xef, 0xbe, 0xad, 0xde};
  auto h = decode_header(b, "NFC 127.0.0.1:902");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("0xDEADBEEF"), std::string::npos) << h.error().message;
  EXPECT_NE(h.error().message.find("NFC 127.0.0.1:902"), std::string::npos);
}

TEST(NfcProtocol, ReadRequestLayout) {
  IoPayload io;
  io.handle = 0x1122334455667788ull;
  io.read = true;
  io.compression = kZlib;
  io.offset = 0x200000;
  io.total = 0x10000;
  io.fragment_length = 0x10000;
  io.extra = 0x10000;
  auto b = encode_io(io);
  ASSERT_EQ(b.size(), 44u);
  EXPECT_EQ(load_le64(b.data()), 0x1122334455667788ull);
  EXPECT_EQ(load_le32(b.data() + 8), 1u);   // read
  EXPECT_EQ(load_le32(b.data() + 12), 1u);  // zlib in the high half
  EXPECT_EQ(load_le64(b.data() + 16), 0x200000u);
  EXPECT_EQ(load_le32(b.data() + 24), 0x10000u);
  EXPECT_EQ(load_le32(b.data() + 28), 0u);
  EXPECT_EQ(load_le32(b.data() + 32), 0x10000u);
  EXPECT_EQ(load_le32(b.data() + 36), 0x10000u);
  EXPECT_EQ(load_le32(b.data() + 40), 0u);
  IoPayload back = decode_io(b.data());
  EXPECT_TRUE(back.read);
  EXPECT_EQ(back.compression, 1u);
  EXPECT_EQ(back.offset, io.offset);
}

TEST(NfcProtocol, OpenFileRequestAndReply) {
  auto ro = encode_open_file(30, true);
  EXPECT_EQ(load_le32(ro.data()), 30u);
  EXPECT_EQ(load_le32(ro.data() + 16), 2u);
  EXPECT_EQ(load_le32(ro.data() + 20), 0x1eu);
  EXPECT_EQ(load_le32(encode_open_file(30, false).data() + 20), 0x1au);

  std::vector<uint8_t> reply(60, 0);
  store_le64(reply.data() + 8, 77);
  store_le32(reply.data() + 16, 2);
  store_le64(reply.data() + 28, 64ull << 30);
  auto r = decode_open_file(reply, "t");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->handle, 77u);
  EXPECT_EQ(r->capacity_bytes, 64ull << 30);
  EXPECT_EQ(r->sector_size, 512u);  // 0 means 512

  store_le32(reply.data() + 16, 0);  // RAW: not a disk
  EXPECT_FALSE(decode_open_file(reply, "t").ok());
  EXPECT_FALSE(decode_open_file(std::vector<uint8_t>(12, 0), "t").ok());
}

TEST(NfcProtocol, ErrorReplyTextInsideOrAfterThePayload) {
  const std::string text = "NFC error 5: Failed to allocate the requested 2097176 bytes";
  std::vector<uint8_t> inside(16, 0);
  store_le64(inside.data(), 5);
  store_le32(inside.data() + 12, uint32_t(text.size()));
  EXPECT_EQ(error_text_after(inside), text.size());
  ErrorReply after = decode_error(inside, text);
  EXPECT_EQ(after.code, 5u);
  EXPECT_EQ(after.text, text);
  inside.insert(inside.end(), text.begin(), text.end());
  EXPECT_EQ(error_text_after(inside), 0u);
  EXPECT_EQ(decode_error(inside, "").text, text);
  // A lying length never reads past the payload.
  store_le32(inside.data() + 12, 1u << 30);
  EXPECT_EQ(decode_error(inside, "").text, text);
}

TEST(NfcProtocol, ZlibFragmentsInflateToExactlyTheirLength) {
  std::vector<uint8_t> data(65536);
  std::mt19937 rng(5);
  for (size_t i = 0; i < data.size(); i += 7) data[i] = uint8_t(rng());
  uLongf clen = compressBound(data.size());
  std::vector<uint8_t> z(clen);
  ASSERT_EQ(compress(z.data(), &clen, data.data(), data.size()), Z_OK);
  z.resize(clen);
  std::vector<uint8_t> out(data.size());
  ASSERT_TRUE(decompress(kZlib, z.data(), z.size(), out.data(), out.size()).ok());
  EXPECT_EQ(out, data);
  // Claimed longer or shorter than the stream, or cut: refused.
  std::vector<uint8_t> big(data.size() + 1);
  EXPECT_FALSE(decompress(kZlib, z.data(), z.size(), big.data(), big.size()).ok());
  EXPECT_FALSE(decompress(kZlib, z.data(), z.size(), out.data(), out.size() - 1).ok());
  EXPECT_FALSE(decompress(kZlib, z.data(), z.size() / 2, out.data(), out.size()).ok());
}

TEST(NfcProtocol, SkipZAsTheReferenceLaysItOut) {
  // 4096 bytes: "abc" at 100, "Z" at 4095, zeros elsewhere.
  std::vector<uint8_t> wire = le32({4096, 0, 100, 3});
  wire.insert(wire.end(), {'a', 'b', 'c'});
  auto run = le32({4095, 1});
  wire.insert(wire.end(), run.begin(), run.end());
  wire.push_back('Z');
  std::vector<uint8_t> out(4096, 0xff);
  auto r = decompress(kSkipZ, wire.data(), wire.size(), out.data(), out.size());
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::vector<uint8_t> expected(4096, 0);
  expected[100] = 'a', expected[101] = 'b', expected[102] = 'c', expected[4095] = 'Z';
  EXPECT_EQ(out, expected);
}

TEST(NfcProtocol, SkipZRoundTripsAndRefusesRunsPastTheEnd) {
  std::vector<uint8_t> data(1 << 20, 0);
  std::mt19937 rng(9);
  for (int i = 0; i < 40; i++) {
    size_t at = rng() % (data.size() - 5000);
    for (size_t j = 0; j < rng() % 5000; j++) data[at + j] = uint8_t(rng() | 1);
  }
  auto wire = skipz_compress(data.data(), data.size());
  EXPECT_LT(wire.size(), data.size() / 2);
  std::vector<uint8_t> out(data.size());
  ASSERT_TRUE(decompress(kSkipZ, wire.data(), wire.size(), out.data(), out.size()).ok());
  EXPECT_EQ(out, data);

  std::vector<uint8_t> past = le32({4096, 0, 4000, 200});
  past.resize(past.size() + 200, 1);
  EXPECT_FALSE(decompress(kSkipZ, past.data(), past.size(), out.data(), 4096).ok());
  std::vector<uint8_t> short_run = le32({4096, 0, 0, 200});
  short_run.resize(short_run.size() + 10, 1);
  EXPECT_FALSE(decompress(kSkipZ, short_run.data(), short_run.size(), out.data(), 4096).ok());
  std::vector<uint8_t> wrong_total = le32({100, 0});
  EXPECT_FALSE(decompress(kSkipZ, wrong_total.data(), wrong_total.size(), out.data(), 4096).ok());
}

TEST(NfcProtocol, FastLzIsRefusedByName) {
  uint8_t in[4] = {}, out[4] = {};
  auto r = decompress(kFastLz, in, 4, out, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("fastlz"), std::string::npos);
}

TEST(NfcProtocol, ClassicMessagesAre264BytesWithFieldsAtTheirOffsets) {
  auto m = classic_message(kClientName, {4, 7});
  EXPECT_EQ(m.size(), 264u);
  EXPECT_EQ(classic_type(m), 54u);
  EXPECT_EQ(classic_u32(m, 4), 4u);
  EXPECT_EQ(classic_u32(m, 8), 7u);
  auto e = classic_message(kClassicError, {3, 9, 5});
  std::memcpy(e.data() + 16, "nope!", 5);
  EXPECT_EQ(classic_error_text(e), "error 3/9: nope!");
  EXPECT_EQ(allocation_bitmap_bytes(1), 4u);
  EXPECT_EQ(allocation_bitmap_bytes(33), 8u);
}
