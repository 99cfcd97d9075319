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

constexpr size_t kMaxConfigBytes = 1 << 20;

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && key_iequals(s.substr(0, prefix.size()), prefix);
}

// VDDK's key `name` (any case) as declared: its own spelling, or the alias one.
struct KnownKey {
  const ConfigKey* key;
  std::string_view spelling;
};
std::optional<KnownKey> find_known(std::string_view name) {
  for (const ConfigKey* k : common_config_keys()) {
    if (k->is_pattern()) continue;
    if (key_iequals(k->name, name)) return KnownKey{k, k->name};
    if (!k->alias.empty() && key_iequals(k->alias, name)) return KnownKey{k, k->alias};
  }
  return std::nullopt;
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
    const std::string where = origin + ":" + std::to_string(line_no);
    if (std::optional<KnownKey> known = find_known(name)) {
      key = known->spelling;
      if (known->key->type != KeyType::kString && !parse_int(value)) {
        return malformed(origin, line_no, key + " needs an integer value, got \"" + value + "\"");
      }
      if (known->key == &kVerifyCertificates && parse_int(value) == 0) {
        warn(where + ": " + key +
             "=0 is ignored: TLS peers are always verified (as in VDDK since 6.0)");
      }
    } else if (!istarts_with(name, "vixfs.")) {
      warn(where + ": unknown key '" + key + "' ignored");
    }
    if (cfg.settings_.count(key)) {
      warn(where + ": '" + key + "' set again; the last value wins");
    }
    cfg.settings_[key] = Setting{std::move(value), where, key};
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

const Setting* Config::find(std::string_view key) const {
  if (auto it = settings_.find(std::string(key)); it != settings_.end()) return &it->second;
  for (const auto& [k, v] : settings_)
    if (key_iequals(k, key)) return &v;
  return nullptr;
}

const Setting* Config::find(const ConfigKey& key) const {
  if (const Setting* s = find(key.name)) return s;
  return key.alias.empty() ? nullptr : find(key.alias);
}

bool Config::has(const std::string& key) const {
  return find(key) != nullptr;
}

std::string Config::get(const std::string& key, const std::string& fallback) const {
  const Setting* s = find(key);
  return s ? s->value : fallback;
}

Result<int64_t> checked_integer(const ConfigKey& key, const std::string& value,
                                const std::string& origin, const std::string& written_name) {
  const std::optional<int64_t> n = parse_int(value);
  if (!n || *n < key.lo || *n > key.hi) {
    return fail(VIX_E_INVALID_ARG,
                origin + ": " + written_name + " = " + value + ": expected " + key.range_text());
  }
  return *n;
}

Result<int64_t> Config::get(const IntKey& key) const {
  return get(key, key.int_default);
}

Result<int64_t> Config::get(const IntKey& key, int64_t context_default) const {
  if (const Setting* s = find(key)) return checked_integer(key, s->value, s->origin, s->name);
  return checked_integer(key, std::to_string(context_default), std::string(kOriginDefault),
                         std::string(key.name));
}

Result<bool> Config::get(const FlagKey& key) const {
  if (const Setting* s = find(key)) {
    VIX_ASSIGN_OR_RETURN(int64_t v, checked_integer(key, s->value, s->origin, s->name));
    return v != 0;
  }
  return key.int_default != 0;
}

std::string Config::get(const TextKey& key) const {
  const Setting* s = find(key);
  return s ? s->value : std::string(key.text_default);
}

std::optional<std::string> Config::get(const PatternKey& key, std::string_view name_value) const {
  if (const Setting* s = find(key.instance(name_value))) return s->value;
  return std::nullopt;
}

Config Config::scoped(const std::string& server_alias) const {
  Config out = *this;
  if (server_alias.empty()) return out;
  const std::string prefix = "vixfs.server." + server_alias + ".";
  for (const auto& [k, v] : settings_) {
    if (!istarts_with(k, prefix)) continue;
    const std::string rest = k.substr(prefix.size());
    if (std::none_of(std::begin(kScopedPrefixes), std::end(kScopedPrefixes),
                     [&](std::string_view p) { return istarts_with(rest, p); })) {
      continue;
    }
    const std::string global = "vixfs." + rest;
    std::erase_if(out.settings_, [&](const auto& kv) { return key_iequals(kv.first, global); });
    out.settings_[global] = v;
  }
  return out;
}

std::vector<std::string> Config::server_aliases() const {
  std::vector<std::string> out;
  std::string alias;
  for (const auto& [k, v] : settings_) {
    if (kServerUrl.matches_pattern(k, &alias)) out.push_back(alias);
  }
  return out;
}

void Config::set(const std::string& key, const std::string& value, std::string_view origin) {
  const std::optional<KnownKey> known = find_known(key);
  const std::string name = known ? std::string(known->spelling) : key;
  settings_[name] = Setting{value, std::string(origin), name};
}

}  // namespace vix
