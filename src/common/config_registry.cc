#include "common/config_registry.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <utility>

namespace vix {

namespace {

constexpr std::string_view kServerPrefix = "vixfs.server.";

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && key_iequals(s.substr(0, prefix.size()), prefix);
}

bool iless(std::string_view a, std::string_view b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) <
           std::tolower(static_cast<unsigned char>(y));
  });
}

// Sorts "file:12" before "file:100": the order of the file, then of the origins' names.
bool origin_less(const std::string& a, const std::string& b) {
  auto split = [](const std::string& s) {
    const size_t colon = s.rfind(':');
    uint64_t line = 0;
    if (colon != std::string::npos &&
        std::from_chars(s.data() + colon + 1, s.data() + s.size(), line).ec == std::errc()) {
      return std::pair<std::string_view, uint64_t>(std::string_view(s).substr(0, colon), line);
    }
    return std::pair<std::string_view, uint64_t>(s, 0);
  };
  return split(a) < split(b);
}

// The ways `name` splits into vixfs.server.ALIAS.TAIL (an alias may hold dots): each TAIL's
// position, after the dot that ends ALIAS.
std::vector<size_t> server_tails(std::string_view name) {
  std::vector<size_t> out;
  if (!istarts_with(name, kServerPrefix)) return out;
  for (size_t dot = name.find('.', kServerPrefix.size() + 1); dot != std::string_view::npos;
       dot = name.find('.', dot + 1)) {
    out.push_back(dot + 1);
  }
  return out;
}

// Every dot-bounded piece of `name`: "a", "a.b", "b" for "a.b".
std::vector<std::string_view> pieces(std::string_view name) {
  std::vector<size_t> starts{0}, ends;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '.') continue;
    ends.push_back(i);
    starts.push_back(i + 1);
  }
  ends.push_back(name.size());
  std::vector<std::string_view> out;
  for (size_t b : starts)
    for (size_t e : ends)
      if (e > b) out.push_back(name.substr(b, e - b));
  return out;
}

std::string dump_line(std::string_view name, const std::string& value, const std::string& origin) {
  return std::string(name) + " = \"" + value + "\"  # " + origin;
}

}  // namespace

KeyRegistry::KeyRegistry(std::initializer_list<KeyList> lists) {
  for (const KeyList& list : lists) {
    for (const ConfigKey* k : list) {
      if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) keys_.push_back(k);
    }
  }
  std::stable_sort(keys_.begin(), keys_.end(),
                   [](const ConfigKey* a, const ConfigKey* b) { return iless(a->name, b->name); });
}

const ConfigKey* KeyRegistry::find_global(std::string_view name) const {
  for (const ConfigKey* k : keys_) {
    if (k->is_pattern()) continue;
    if (key_iequals(k->name, name) || (!k->alias.empty() && key_iequals(k->alias, name))) {
      return k;
    }
  }
  for (const ConfigKey* k : keys_) {
    if (k->matches_pattern(name)) return k;
  }
  return nullptr;
}

const ConfigKey* KeyRegistry::find(std::string_view name) const {
  for (size_t tail : server_tails(name)) {
    const std::string_view rest = name.substr(tail);
    for (std::string_view scoped : kScopedPrefixes) {
      if (!istarts_with(rest, scoped)) continue;
      if (const ConfigKey* k = find_global("vixfs." + std::string(rest))) return k;
    }
  }
  return find_global(name);
}

std::string KeyRegistry::nearest(std::string_view name) const {
  std::vector<std::string> candidates;
  for (const ConfigKey* k : keys_) {
    if (!k->is_pattern()) {
      candidates.emplace_back(k->name);
      if (!k->alias.empty()) candidates.emplace_back(k->alias);
      continue;
    }
    // Each dot-bounded piece of `name` as the pattern's NAME: vixfs.sever.lab.url has "lab".
    for (std::string_view piece : pieces(name)) candidates.push_back(k->instance(piece));
  }
  // A per-server copy of a global key: vixfs.server.lab.nbd.conections.
  for (size_t tail : server_tails(name)) {
    for (const ConfigKey* k : keys_) {
      for (std::string_view scoped : kScopedPrefixes) {
        const std::string global = "vixfs." + std::string(scoped);
        if (!k->is_pattern() && istarts_with(k->name, global)) {
          candidates.push_back(std::string(name.substr(0, tail)) + std::string(scoped) +
                               std::string(k->name.substr(global.size())));
        }
      }
    }
  }
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 4) + 1;  // farther is no suggestion
  for (const std::string& c : candidates) {
    const size_t d = key_distance(name, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

std::vector<std::string> KeyRegistry::unknown_keys(const Config& config) const {
  std::vector<std::pair<std::string, std::string>> found;  // origin, warning
  for (const auto& [key, setting] : config.settings()) {
    if (!istarts_with(key, "vixfs.") || find(key) != nullptr) continue;
    const std::string suggestion = nearest(key);
    found.emplace_back(
        setting.origin,
        setting.origin + ": unknown key " + setting.name +
            (suggestion.empty() ? " ignored" : " (did you mean " + suggestion + "?)"));
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return origin_less(a.first, b.first); });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::vector<std::string> KeyRegistry::invalid_values(const Config& config) const {
  std::vector<std::pair<std::string, std::string>> found;
  for (const auto& [key, setting] : config.settings()) {
    const ConfigKey* k = find(key);
    if (k == nullptr || k->type == KeyType::kString) continue;
    auto checked = checked_integer(*k, setting.value, setting.origin, setting.name);
    if (!checked.ok()) found.emplace_back(setting.origin, checked.error().message);
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return origin_less(a.first, b.first); });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::vector<std::string> KeyRegistry::dump(const Config& config) const {
  std::vector<std::pair<std::string, std::string>> lines;  // name, line
  for (const ConfigKey* k : keys_) {
    if (k->is_pattern()) continue;
    if (const Setting* s = config.find(*k)) {
      std::string origin = s->origin;
      if (!key_iequals(s->name, k->name)) origin += " (as " + s->name + ")";
      lines.emplace_back(k->name, dump_line(k->name, s->value, origin));
    } else {
      std::string origin(kOriginDefault);
      if (!k->default_note.empty()) origin += " (" + std::string(k->default_note) + ")";
      lines.emplace_back(k->name, dump_line(k->name, k->default_text(), origin));
    }
  }
  // Keys of a family and per-server copies are listed as they were set.
  for (const auto& [key, setting] : config.settings()) {
    const ConfigKey* global = find_global(key);
    if ((global != nullptr && !global->is_pattern()) || find(key) == nullptr) continue;
    lines.emplace_back(setting.name, dump_line(setting.name, setting.value, setting.origin));
  }
  std::stable_sort(lines.begin(), lines.end(),
                   [](const auto& a, const auto& b) { return iless(a.first, b.first); });
  std::vector<std::string> out;
  for (auto& l : lines) out.push_back(std::move(l.second));
  return out;
}

}  // namespace vix
