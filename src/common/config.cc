#include "common/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

namespace vix {

namespace {

enum class KeyKind { kString, kInteger };

struct KnownKey {
  const char* name;
  KeyKind kind;
};

// VDDK's keys (DESIGN.md "Configuration" and docs/reference/vddk-abi.md §7). vixfs.* keys are ours
// and checked by whoever reads them.
constexpr KnownKey kKnownKeys[] = {
    {"tmpDirectory", KeyKind::kString},
    {"vixDiskLib.transport.LogLevel", KeyKind::kInteger},
    {"vixDiskLib.disklib.EnableCache", KeyKind::kInteger},
    {"vixDiskLib.linuxSSL.verifyCertificates", KeyKind::kInteger},
    {"linuxSSL.verifyCertificates", KeyKind::kInteger},
    {"vixDiskLib.nfc.LogLevel", KeyKind::kInteger},
    {"vixDiskLib.nfc.AcceptTimeoutMs", KeyKind::kInteger},
    {"vixDiskLib.nfc.RequestTimeoutMs", KeyKind::kInteger},
    {"vixDiskLib.nfc.ReadTimeoutMs", KeyKind::kInteger},
    {"vixDiskLib.nfc.WriteTimeoutMs", KeyKind::kInteger},
    {"vixDiskLib.nfc.ReadTimeoutsMs", KeyKind::kInteger},
    {"vixDiskLib.nfc.WriteTimeoutsMs", KeyKind::kInteger},
    {"vixDiskLib.nfcFssrvr.TimeoutMs", KeyKind::kInteger},
    {"vixDiskLib.nfcFssrvrWrite.TimeoutMs", KeyKind::kInteger},
    {"vixDiskLib.transport.san.blacklist", KeyKind::kString},
    {"vixDiskLib.transport.san.whitelist", KeyKind::kString},
    {"vixDiskLib.transport.san.denyList", KeyKind::kString},
    {"vixDiskLib.transport.san.allowList", KeyKind::kString},
    {"vixDiskLib.nfcAio.Session.BufSizeIn64KB", KeyKind::kInteger},
    {"vixDiskLib.nfcAio.Session.BufCount", KeyKind::kInteger},
    {"vixDiskLib.transport.hotadd.NoNfcSession", KeyKind::kInteger},
    {"vixDiskLib.phoneHome.EnablePhoneHome", KeyKind::kInteger},
    {"vixDiskLib.phoneHome.ProductName", KeyKind::kString},
    {"vixDiskLib.phoneHome.ProductVersion", KeyKind::kString},
    {"log.fileName", KeyKind::kString},
    {"log.fileLevel", KeyKind::kString},
};

constexpr size_t kMaxConfigBytes = 1 << 20;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

const KnownKey* find_known(std::string_view name) {
  for (const KnownKey& k : kKnownKeys)
    if (iequals(k.name, name)) return &k;
  return nullptr;
}

std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::optional<int64_t> parse_int(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  const char* first = s.data();
  if (*first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

Error malformed(const std::string& origin, size_t line, const std::string& why) {
  return fail(VIX_E_INVALID_ARG, origin + ":" + std::to_string(line) + ": " + why);
}

}  // namespace

Result<Config> Config::parse(const std::string& text, const std::string& origin,
                             std::vector<std::string>* warnings) {
  auto warn = [&](std::string w) {
    if (warnings) warnings->push_back(std::move(w));
  };
  if (text.size() > kMaxConfigBytes) {
    return fail(VIX_E_INVALID_ARG, origin + ": configuration file larger than 1 MiB");
  }
  Config cfg;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line = trim(std::string_view(text).substr(pos, nl - pos));
    ++line_no;
    pos = nl + 1;
    if (line.empty() || line[0] == '#') continue;

    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return malformed(origin, line_no, "malformed line, expected name = \"value\"");
    }
    std::string_view name = trim(line.substr(0, eq));
    if (!valid_name(name)) {
      return malformed(origin, line_no,
                       "malformed line, invalid key name '" + std::string(name) + "'");
    }
    std::string_view rest = trim(line.substr(eq + 1));
    std::string value;
    if (!rest.empty() && rest[0] == '"') {
      size_t close = rest.find('"', 1);
      if (close == std::string_view::npos) {
        return malformed(origin, line_no,
                         "malformed line, missing closing quote for '" + std::string(name) + "'");
      }
      value = std::string(rest.substr(1, close - 1));
      std::string_view after = trim(rest.substr(close + 1));
      if (!after.empty() && after[0] != '#') {
        return malformed(
            origin, line_no,
            "malformed line, unexpected text after the value of '" + std::string(name) + "'");
      }
    } else {
      size_t hash = rest.find('#');
      value = std::string(trim(rest.substr(0, hash)));
      if (value.find('"') != std::string::npos) {
        return malformed(origin, line_no,
                         "malformed line, stray quote in the value of '" + std::string(name) + "'");
      }
    }

    std::string key(name);
    if (const KnownKey* known = find_known(name)) {
      key = known->name;
      if (known->kind == KeyKind::kInteger && !parse_int(value)) {
        return malformed(origin, line_no, key + " needs an integer value, got \"" + value + "\"");
      }
      if ((key == "vixDiskLib.linuxSSL.verifyCertificates" ||
           key == "linuxSSL.verifyCertificates") &&
          parse_int(value) == 0) {
        warn(origin + ":" + std::to_string(line_no) + ": " + key +
             "=0 is ignored: TLS peers are always verified (as in VDDK since 6.0)");
      }
    } else if (!istarts_with(name, "vixfs.")) {
      warn(origin + ":" + std::to_string(line_no) + ": unknown key '" + key + "' ignored");
    }
    if (cfg.values_.count(key)) {
      warn(origin + ":" + std::to_string(line_no) + ": '" + key +
           "' set again; the last value wins");
    }
    cfg.values_[key] = std::move(value);
  }
  return cfg;
}

Result<Config> Config::load_file(const std::string& path, std::vector<std::string>* warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(VIX_E_FILE_NOT_FOUND, path + ": cannot open configuration file");
  std::string text;
  text.resize(kMaxConfigBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return fail(VIX_E_FILE_ERROR, path + ": cannot read configuration file");
  return parse(text, path, warnings);
}

bool Config::has(const std::string& key) const {
  if (values_.count(key)) return true;
  for (const auto& [k, v] : values_)
    if (iequals(k, key)) return true;
  return false;
}

std::string Config::get(const std::string& key, const std::string& fallback) const {
  auto it = values_.find(key);
  if (it != values_.end()) return it->second;
  for (const auto& [k, v] : values_)
    if (iequals(k, key)) return v;
  return fallback;
}

Result<int64_t> Config::get_int(const std::string& key, int64_t fallback) const {
  if (!has(key)) return fallback;
  std::string v = get(key);
  auto n = parse_int(v);
  if (!n)
    return fail(VIX_E_INVALID_ARG,
                "configuration key " + key + " = \"" + v + "\" is not an integer");
  return *n;
}

Result<int64_t> Config::get_int_in(const std::string& key, int64_t fallback, int64_t lo,
                                   int64_t hi) const {
  VIX_ASSIGN_OR_RETURN(int64_t v, get_int(key, fallback));
  if (v < lo || v > hi) {
    return fail(VIX_E_INVALID_ARG, key + " = " + std::to_string(v) + ": expected " +
                                       std::to_string(lo) + ".." + std::to_string(hi));
  }
  return v;
}

Result<int64_t> Config::get_int_any(const std::vector<std::string>& keys, int64_t fallback) const {
  for (const std::string& k : keys)
    if (has(k)) return get_int(k, fallback);
  return fallback;
}

Config Config::scoped(const std::string& server_alias) const {
  Config out = *this;
  if (server_alias.empty()) return out;
  const std::string prefix = "vixfs.server." + server_alias + ".";
  for (const auto& [k, v] : values_) {
    if (!istarts_with(k, prefix)) continue;
    const std::string rest = k.substr(prefix.size());
    if (!istarts_with(rest, "nbd.") && !istarts_with(rest, "datastore.")) continue;
    const std::string global = "vixfs." + rest;
    std::erase_if(out.values_, [&](const auto& kv) { return iequals(kv.first, global); });
    out.values_[global] = v;
  }
  return out;
}

std::vector<std::string> Config::server_aliases() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : values_) {
    if (!istarts_with(k, "vixfs.server.") || k.size() <= 17) continue;
    const std::string rest = k.substr(13);
    const size_t dot = rest.rfind('.');
    if (dot == std::string::npos || dot == 0 || !iequals(rest.substr(dot + 1), "url")) continue;
    out.push_back(rest.substr(0, dot));
  }
  return out;
}

void Config::set(const std::string& key, const std::string& value) {
  const KnownKey* known = find_known(key);
  values_[known ? std::string(known->name) : key] = value;
}

}  // namespace vix
