// Descriptor parsing is line-based and keyed at line start (unlike qemu's substring lookups, see
// vmdk-format.md §2.5), so `parentCID` before `CID` and blank lines before extents are harmless.
#include "vmdk/descriptor.h"

#include <cinttypes>
#include <cstdio>
#include <random>

namespace vix::vmdk {

namespace {

constexpr size_t kMaxText = 1 << 20;
constexpr size_t kMaxExtents = 10000;
// 2^54 sectors = 8 EiB: byte offsets of any extent stay representable in 64 bits.
constexpr uint64_t kMaxSectors = uint64_t{1} << 54;

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = upper(c);
  return out;
}

// The text up to the first NUL: embedded descriptors are NUL-padded to their sector area.
std::string_view until_nul(std::string_view text) {
  auto nul = text.find('\0');
  return nul == std::string_view::npos ? text : text.substr(0, nul);
}

// Removes one pair of surrounding double quotes.
std::string_view unquote(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

bool parse_hex32(std::string_view s, uint32_t* out) {
  s = unquote(s);
  if (s.empty() || s.size() > 8) return false;
  uint32_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return false;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  *out = v;
  return true;
}

bool parse_dec(std::string_view s, uint64_t limit, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (limit - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// A cursor over one extent line's tokens.
struct Tokens {
  std::string_view rest;
  void skip_blanks() {
    while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
  }
  std::string_view word() {
    skip_blanks();
    size_t n = 0;
    while (n < rest.size() && !is_blank(rest[n])) ++n;
    auto w = rest.substr(0, n);
    rest.remove_prefix(n);
    return w;
  }
  bool at_end() {
    skip_blanks();
    return rest.empty();
  }
};

bool is_access(std::string_view w) {
  return iequals(w, "RW") || iequals(w, "RDONLY") || iequals(w, "NOACCESS");
}

// Types whose line has a file but no offset field.
bool is_plain_file_type(const std::string& t) {
  return t == "SPARSE" || t == "VMFSSPARSE" || t == "SESPARSE" || t == "VMFS";
}

Result<ExtentLine> parse_extent(std::string_view line, const std::string& where) {
  Tokens tok{line};
  ExtentLine e;
  e.access = to_upper(tok.word());
  auto size_word = tok.word();
  if (!parse_dec(size_word, kMaxSectors, &e.sectors)) {
    return fail(VIX_E_DISK_INVAL,
                where + "extent size '" + std::string(size_word) + "' is not a sector count");
  }
  if (e.sectors == 0) return fail(VIX_E_DISK_INVAL, where + "extent size is 0");
  e.type = to_upper(tok.word());
  if (e.type.empty()) return fail(VIX_E_DISK_INVAL, where + "extent line has no type");
  if (e.type == "ZERO") {
    if (!tok.at_end()) return fail(VIX_E_DISK_INVAL, where + "ZERO extent with a file name");
    return e;
  }
  tok.skip_blanks();
  if (tok.rest.empty()) return fail(VIX_E_DISK_INVAL, where + e.type + " extent without a file");
  if (tok.rest.front() == '"') {
    auto close = tok.rest.find('"', 1);
    if (close == std::string_view::npos) {
      return fail(VIX_E_DISK_INVAL, where + "extent file name has no closing quote");
    }
    e.file = std::string(tok.rest.substr(1, close - 1));
    tok.rest.remove_prefix(close + 1);
    if (!tok.rest.empty() && !is_blank(tok.rest.front())) {
      return fail(VIX_E_DISK_INVAL, where + "text right after the extent file name's quote");
    }
  } else {
    // VMware always quotes; an unquoted single-word name is unambiguous, so accept it.
    e.file = std::string(tok.word());
  }
  if (e.file.empty()) return fail(VIX_E_DISK_INVAL, where + "empty extent file name");
  if (e.type == "FLAT") {
    if (!tok.at_end()) {
      auto off_word = tok.word();
      if (!parse_dec(off_word, kMaxSectors, &e.offset)) {
        return fail(VIX_E_DISK_INVAL, where + "FLAT extent offset '" + std::string(off_word) +
                                          "' is not a sector number");
      }
      e.has_offset = true;
      if (e.offset + e.sectors > kMaxSectors) {
        return fail(VIX_E_DISK_INVAL, where + "FLAT extent offset plus size overflows");
      }
    }
    if (!tok.at_end()) return fail(VIX_E_DISK_INVAL, where + "extra fields after FLAT offset");
  } else if (is_plain_file_type(e.type)) {
    if (!tok.at_end()) {
      return fail(VIX_E_DISK_INVAL, where + e.type + " extent line has an unexpected offset field");
    }
  }
  // Other types (VMFSRDM, VMFSRAW, ...) may carry partition/device fields; the engine rejects
  // the type itself, so their extra fields are not interpreted here.
  return e;
}

}  // namespace

Result<Descriptor> Descriptor::parse(std::string_view text, const std::string& origin) {
  if (text.size() > kMaxText) {
    return fail(VIX_E_DISK_INVAL, origin + ": descriptor is " + std::to_string(text.size()) +
                                      " bytes, more than the 1 MiB limit");
  }
  text = until_nul(text);
  Descriptor d;
  bool have_cid = false, have_parent_cid = false, have_type = false, have_hint = false;
  uint64_t total = 0;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    auto nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    const std::string where = origin + ": line " + std::to_string(line_no) + ": ";

    Tokens probe{line};
    if (is_access(probe.word()) && !probe.rest.empty() && is_blank(probe.rest.front())) {
      if (d.extents.size() >= kMaxExtents) {
        return fail(VIX_E_DISK_INVAL,
                    where + "more than " + std::to_string(kMaxExtents) + " extents");
      }
      VIX_ASSIGN_OR_RETURN(ExtentLine e, parse_extent(line, where));
      total += e.sectors;  // each <= 2^54 and at most 10000 of them: no uint64 overflow
      if (total > kMaxSectors) {
        return fail(VIX_E_DISK_INVAL, where + "total extent size exceeds 2^54 sectors");
      }
      d.extents.push_back(std::move(e));
      continue;
    }

    auto eq = line.find('=');
    if (eq == std::string_view::npos) continue;  // unknown non key=value text: ignored, as VMware
    std::string_view key = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    if (iequals(key, "CID")) {
      if (have_cid) continue;  // the first occurrence wins, as in qemu
      if (!parse_hex32(value, &d.cid)) {
        return fail(VIX_E_DISK_INVAL,
                    where + "CID '" + std::string(value) + "' is not a 32-bit hex number");
      }
      have_cid = true;
    } else if (iequals(key, "parentCID")) {
      if (have_parent_cid) continue;
      if (!parse_hex32(value, &d.parent_cid)) {
        return fail(VIX_E_DISK_INVAL,
                    where + "parentCID '" + std::string(value) + "' is not a 32-bit hex number");
      }
      have_parent_cid = true;
    } else if (iequals(key, "createType")) {
      if (have_type) continue;
      d.create_type = std::string(unquote(value));
      have_type = true;
    } else if (iequals(key, "parentFileNameHint")) {
      if (have_hint) continue;
      d.parent_file_name_hint = std::string(unquote(value));
      have_hint = true;
    } else if (key.size() > 4 && iequals(key.substr(0, 4), "ddb.")) {
      d.ddb.emplace_back(std::string(key), std::string(unquote(value)));
    } else if (key.size() > 11 && iequals(key.substr(0, 11), "encryption.")) {
      if (d.encryption_key.empty()) d.encryption_key = std::string(key);
    }
  }
  if (!have_cid) return fail(VIX_E_DISK_INVAL, origin + ": descriptor has no CID= line");
  return d;
}

namespace {

uint32_t parse_u32(const std::string& s) {
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') break;
    v = v * 10 + static_cast<uint64_t>(c - '0');
    if (v > 0xffffffffu) return 0;
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

void fill_info_from_ddb(const std::function<std::string(const std::string&)>& ddb, DiskInfo* info) {
  info->phys_geometry.cylinders = parse_u32(ddb("ddb.geometry.cylinders"));
  info->phys_geometry.heads = parse_u32(ddb("ddb.geometry.heads"));
  info->phys_geometry.sectors = parse_u32(ddb("ddb.geometry.sectors"));
  info->bios_geometry = info->phys_geometry;
  if (!ddb("ddb.geometry.biosCylinders").empty()) {
    info->bios_geometry.cylinders = parse_u32(ddb("ddb.geometry.biosCylinders"));
    info->bios_geometry.heads = parse_u32(ddb("ddb.geometry.biosHeads"));
    info->bios_geometry.sectors = parse_u32(ddb("ddb.geometry.biosSectors"));
  }
  const std::string adapter = ddb("ddb.adapterType");
  if (adapter == "ide") {
    info->adapter = VIXDISKLIB_ADAPTER_IDE;
  } else if (adapter == "buslogic") {
    info->adapter = VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC;
  } else if (adapter == "lsilogic") {
    info->adapter = VIXDISKLIB_ADAPTER_SCSI_LSILOGIC;
  } else {
    info->adapter = VIXDISKLIB_ADAPTER_UNKNOWN;
  }
  info->uuid = ddb("ddb.uuid");
}

std::string format_cid(uint32_t cid) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%" PRIx32, cid);
  return buf;
}

std::string Descriptor::render() const {
  std::string out = "# Disk DescriptorFile\nversion=1\n";
  out += "CID=" + format_cid(cid) + "\n";
  out += "parentCID=" + format_cid(parent_cid) + "\n";
  out += "createType=\"" + create_type + "\"\n";
  // qemu's template: the hint line takes the place of the blank line before the extents.
  if (!parent_file_name_hint.empty()) {
    out += "parentFileNameHint=\"" + parent_file_name_hint + "\"\n";
  } else {
    out += "\n";
  }
  out += "# Extent description\n";
  for (const auto& e : extents) {
    out += e.access + " " + std::to_string(e.sectors) + " " + e.type;
    if (e.type != "ZERO") out += " \"" + e.file + "\"";
    if (e.has_offset) out += " " + std::to_string(e.offset);
    out += "\n";
  }
  out += "\n# The Disk Data Base\n#DDB\n\n";
  for (const auto& [k, v] : ddb) out += k + " = \"" + v + "\"\n";
  return out;
}

std::string Descriptor::ddb_value(const std::string& key, const std::string& fallback) const {
  const std::string full = key.rfind("ddb.", 0) == 0 ? key : "ddb." + key;
  for (const auto& [k, v] : ddb)
    if (iequals(k, full)) return v;
  return fallback;
}

uint64_t Descriptor::total_sectors() const {
  uint64_t sum = 0;
  for (const auto& e : extents) sum += e.sectors;
  return sum;
}

Result<std::string> rewrite_cid(std::string_view text, uint32_t new_cid,
                                const std::string& origin) {
  text = until_nul(text);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    auto eq = line.find('=');
    if (eq != std::string_view::npos && iequals(trim(line.substr(0, eq)), "CID")) {
      size_t vstart = eq + 1;
      while (vstart < line.size() && (line[vstart] == ' ' || line[vstart] == '\t')) ++vstart;
      size_t vend = line.size();
      if (vend > vstart && line[vend - 1] == '\r') --vend;  // keep CRLF line endings
      std::string out(text.substr(0, pos + vstart));
      out += format_cid(new_cid);
      out += text.substr(pos + vend);
      return out;
    }
    pos = end + 1;
  }
  return fail(VIX_E_DISK_INVAL, origin + ": descriptor has no CID= line to rewrite");
}

Result<std::string> set_ddb_value(std::string_view text, const std::string& key,
                                  const std::string& value, const std::string& origin) {
  const std::string full = key.rfind("ddb.", 0) == 0 ? key : "ddb." + key;
  if (full.size() <= 4 || full.find_first_of("=\"\r\n") != std::string::npos) {
    return fail(VIX_E_INVALID_ARG, origin + ": invalid DDB key '" + key + "'");
  }
  if (value.find_first_of("\"\r\n") != std::string::npos || value.find('\0') != std::string::npos) {
    return fail(VIX_E_INVALID_ARG,
                origin + ": DDB value for " + full + " contains a quote, newline or NUL");
  }
  text = until_nul(text);
  const std::string new_line = full + " = \"" + value + "\"";
  size_t pos = 0;
  size_t after_last_ddb = std::string_view::npos;
  std::string_view eol = "\n";
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') eol = "\r\n";
    auto eq = line.find('=');
    if (eq != std::string_view::npos) {
      auto k = trim(line.substr(0, eq));
      if (iequals(k, full)) {
        size_t vend = line.size();
        if (vend > 0 && line[vend - 1] == '\r') --vend;
        return std::string(text.substr(0, pos)) + new_line + std::string(text.substr(pos + vend));
      }
      if (k.size() > 4 && iequals(k.substr(0, 4), "ddb.")) after_last_ddb = end;
    }
    pos = end + 1;
  }
  if (after_last_ddb != std::string_view::npos) {
    // Insert right after the last ddb line (after its line ending when it has one).
    if (after_last_ddb < text.size()) {
      return std::string(text.substr(0, after_last_ddb + 1)) + new_line + std::string(eol) +
             std::string(text.substr(after_last_ddb + 1));
    }
    return std::string(text) + std::string(eol) + new_line + std::string(eol);
  }
  std::string out(text);
  if (!out.empty() && out.back() != '\n') out += eol;
  return out + new_line + std::string(eol);
}

uint32_t new_content_id() {
  static thread_local std::mt19937 gen(std::random_device{}());
  uint32_t v;
  do {
    v = static_cast<uint32_t>(gen());
  } while (v == 0xffffffffu || v == 0xfffffffeu);
  return v;
}

}  // namespace vix::vmdk
