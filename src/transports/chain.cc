#include <algorithm>
#include <cctype>

#include "common/log.h"
#include "transports/config_keys.h"
#include "transports/transport.h"

namespace vix {

// How a mode reaches the disk. A remote connection whose only mode reads the storage, and
// cannot open the disk, falls back to the encrypted network modes (open_through_chain).
enum class Reach {
  kStorage,    // reads the disk's storage directly (local files, a LUN, a hot-added disk)
  kEncrypted,  // over the network, encrypted: a fallback for kStorage modes
  kPlain,      // over the network in plain text: only when the mode list names it
};

// The one table of transport modes, in VDDK's default order: ListTransportModes, the default
// chain, the fallback order and GetTransportMode's names all come from it. One line per mode;
// the mode's src/transports/<mode>.cc defines make_<mode>_transport(). A macro, so that the
// line also declares that factory and no header has to list it.
#define VIX_TRANSPORT_MODES(MODE) \
  MODE(file, kStorage)            \
  MODE(san, kStorage)             \
  MODE(hotadd, kStorage)          \
  MODE(nbdssl, kEncrypted)        \
  MODE(nbd, kPlain)               \
  MODE(https, kEncrypted)

#define VIX_DECLARE_FACTORY(mode, reach) std::unique_ptr<Transport> make_##mode##_transport();
VIX_TRANSPORT_MODES(VIX_DECLARE_FACTORY)
#undef VIX_DECLARE_FACTORY

namespace {

struct ModeEntry {
  const char* name;  // a literal: GetTransportMode hands it out
  std::unique_ptr<Transport> (*make)();
  Reach reach;
};

constexpr ModeEntry kModes[] = {
#define VIX_MODE_ENTRY(mode, reach) {#mode, &make_##mode##_transport, Reach::reach},
    VIX_TRANSPORT_MODES(VIX_MODE_ENTRY)
#undef VIX_MODE_ENTRY
};
#undef VIX_TRANSPORT_MODES

// The transport files that declare configuration keys: each defines <file>_config_keys() next to
// the code that reads them (nbd.cc serves both nbd and nbdssl).
#define VIX_TRANSPORT_KEY_FILES(FILE) FILE(file) FILE(san) FILE(hotadd) FILE(nbd) FILE(https)

}  // namespace

#define VIX_DECLARE_KEYS(file) KeyList file##_config_keys();
VIX_TRANSPORT_KEY_FILES(VIX_DECLARE_KEYS)
#undef VIX_DECLARE_KEYS

KeyList transport_config_keys() {
  static const std::vector<const ConfigKey*> keys = [] {
    std::vector<const ConfigKey*> all;
    for (KeyList list : {
#define VIX_KEY_LIST(file) file##_config_keys(),
             VIX_TRANSPORT_KEY_FILES(VIX_KEY_LIST)
#undef VIX_KEY_LIST
         }) {
      all.insert(all.end(), list.begin(), list.end());
    }
    return all;
  }();
  return keys;
}
#undef VIX_TRANSPORT_KEY_FILES

namespace {

const ModeEntry* find_mode(std::string_view name) {
  for (const ModeEntry& m : kModes)
    if (name == m.name) return &m;
  return nullptr;
}

}  // namespace

const std::vector<std::string>& known_transport_modes() {
  static const std::vector<std::string> modes = [] {
    std::vector<std::string> v;
    for (const ModeEntry& m : kModes) v.emplace_back(m.name);
    return v;
  }();
  return modes;
}

const char* transport_static_name(std::string_view mode) {
  const ModeEntry* entry = find_mode(mode);
  return entry ? entry->name : "unknown";
}

std::unique_ptr<Transport> make_transport(std::string_view mode) {
  const ModeEntry* entry = find_mode(mode);
  return entry ? entry->make() : nullptr;
}

Result<std::vector<std::string>> parse_transport_modes(const std::string& modes) {
  if (modes.empty()) return known_transport_modes();
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= modes.size()) {
    size_t colon = modes.find(':', pos);
    if (colon == std::string::npos) colon = modes.size();
    std::string mode = modes.substr(pos, colon - pos);
    pos = colon + 1;
    std::transform(mode.begin(), mode.end(), mode.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (mode.empty()) {
      return fail(VIX_E_INVALID_ARG, "transport modes \"" + modes + "\": empty mode name");
    }
    if (!find_mode(mode)) {
      std::string all;
      for (const ModeEntry& m : kModes) all += (all.empty() ? "" : ", ") + std::string(m.name);
      return fail(VIX_E_INVALID_ARG, "transport modes \"" + modes + "\": unknown mode '" + mode +
                                         "' (known: " + all + ")");
    }
    if (std::find(out.begin(), out.end(), mode) == out.end()) out.push_back(std::move(mode));
  }
  return out;
}

namespace {

// Tries one mode; on failure logs why it was skipped and appends the reason.
Result<std::unique_ptr<BlockDevice>> try_mode(const std::string& mode, const TransportContext& ctx,
                                              const std::string& path, uint32_t flags,
                                              std::vector<Error>* failures) {
  const ModeEntry* entry = find_mode(mode);
  Error why;
  if (entry == nullptr) {
    why = fail(VIX_E_NOT_SUPPORTED, mode + ": not available in this version of vixfs");
  } else {
    auto dev = entry->make()->open(ctx, path, flags);
    if (dev.ok()) return dev;
    why = std::move(dev).error();
  }
  log::info(path + ": transport " + mode + " skipped: " + why.message);
  failures->push_back(why);
  return why;
}

bool reads_storage(const std::string& mode) {
  const ModeEntry* entry = find_mode(mode);
  return entry != nullptr && entry->reach == Reach::kStorage;
}

// The encrypted network modes in table order, and how the log names them ("nbdssl, then https").
const std::vector<std::string>& encrypted_fallbacks() {
  static const std::vector<std::string> modes = [] {
    std::vector<std::string> v;
    for (const ModeEntry& m : kModes)
      if (m.reach == Reach::kEncrypted) v.emplace_back(m.name);
    return v;
  }();
  return modes;
}

std::string fallback_list() {
  std::string out;
  for (const std::string& m : encrypted_fallbacks()) out += (out.empty() ? "" : ", then ") + m;
  return out;
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_through_chain(const std::vector<std::string>& modes,
                                                        const TransportContext& ctx,
                                                        const std::string& path, uint32_t flags) {
  if (modes.empty()) return fail(VIX_E_INVALID_ARG, path + ": no transport mode to try");
  std::vector<Error> failures;
  for (const std::string& mode : modes) {
    auto dev = try_mode(mode, ctx, path, flags, &failures);
    if (dev.ok()) return dev;
  }
  // As VDDK does: a remote connection asked for exactly one mode that reads the disk's storage
  // and that mode cannot open the disk: it goes on over the network, encrypted only (nbdssl,
  // then https; plain nbd only when the list names it).
  if (modes.size() == 1 && reads_storage(modes[0]) && ctx.remote != nullptr) {
    log::warn(path + ": transport " + modes[0] + " cannot open the disk (" +
              failures.front().message + "); falling back to " + fallback_list());
    for (const std::string& mode : encrypted_fallbacks()) {
      auto dev = try_mode(mode, ctx, path, flags, &failures);
      if (dev.ok()) return dev;
    }
  }
  if (failures.size() == 1) return std::move(failures.front());
  // The most telling code is the first failure of a mode that applied at all. san's NEEDVMFS
  // says only that a datastore disk is not a LUN: it did not apply either.
  VixError code = VIX_E_NOT_SUPPORTED;
  for (const Error& e : failures) {
    if (e.code != VIX_E_NOT_SUPPORTED && e.code != VIX_E_DISK_NEEDVMFS) {
      code = e.code;
      break;
    }
  }
  std::string msg = path + ": no transport mode could open the disk:";
  for (const Error& e : failures) msg += " [" + e.message + "]";
  return fail(code, msg);
}

}  // namespace vix
