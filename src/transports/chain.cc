#include <algorithm>
#include <cctype>

#include "common/log.h"
#include "transports/transport.h"

namespace vix {

namespace {

struct ModeEntry {
  const char* name;
  std::unique_ptr<Transport> (*make)();  // nullptr: a VDDK mode this build does not have yet
};

// The one list of transport modes, in VDDK's default order. A mode gets its factory here when
// its transport lands; ListTransportModes and the default chain follow automatically.
constexpr ModeEntry kModes[] = {
    {"file", &make_file_transport},     {"san", &make_san_transport},
    {"hotadd", &make_hotadd_transport}, {"nbdssl", &make_nbdssl_transport},
    {"nbd", &make_nbd_transport},       {"https", &make_https_transport},
};

const ModeEntry* find_mode(const std::string& name) {
  for (const ModeEntry& m : kModes)
    if (name == m.name) return &m;
  return nullptr;
}

}  // namespace

const std::vector<std::string>& known_transport_modes() {
  static const std::vector<std::string> modes = [] {
    std::vector<std::string> v;
    for (const ModeEntry& m : kModes)
      if (m.make) v.emplace_back(m.name);
    return v;
  }();
  return modes;
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
  if (entry == nullptr || entry->make == nullptr) {
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

bool is_local_access_mode(const std::string& mode) {
  return mode == "file" || mode == "san" || mode == "hotadd";
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
  // As VDDK does: a remote connection asked for exactly one local-access mode that cannot open
  // the disk goes on over the network, encrypted only (nbdssl, then https; plain nbd only when
  // the list names it).
  if (modes.size() == 1 && is_local_access_mode(modes[0]) && ctx.remote != nullptr) {
    log::warn(path + ": transport " + modes[0] + " cannot open the disk (" +
              failures.front().message + "); falling back to nbdssl, then https");
    for (const char* mode : {"nbdssl", "https"}) {
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
