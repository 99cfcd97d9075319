#include "common/config_keys.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace vix {

namespace {

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// VDDK's keys that vixfs accepts and does not use: a VDDK configuration file loads as it is.
constexpr IntKey unused_integer(std::string_view name, int64_t dflt, std::string_view doc) {
  return IntKey(name, kNoLowerLimit, kNoLimit, dflt, doc, default_varies("not used by vixfs"));
}
constexpr TextKey unused_text(std::string_view name, std::string_view doc) {
  return TextKey(name, "", doc, default_varies("not used by vixfs"));
}

constexpr TextKey kLogFileLevel =
    unused_text("log.fileLevel", "accepted; the log file gets vixDiskLib.transport.LogLevel");
constexpr IntKey kNfcLogLevel =
    unused_integer("vixDiskLib.nfc.LogLevel", 1, "accepted; log level of the network transports");
constexpr IntKey kNfcFssrvrTimeout = unused_integer(
    "vixDiskLib.nfcFssrvr.TimeoutMs", 0, "accepted; VMware's file-system server is not used");
constexpr IntKey kNfcFssrvrWriteTimeout = unused_integer(
    "vixDiskLib.nfcFssrvrWrite.TimeoutMs", 0, "accepted; VMware's file-system server is not used");
constexpr IntKey kNfcAioBufSize =
    unused_integer("vixDiskLib.nfcAio.Session.BufSizeIn64KB", 0,
                   "accepted; nbd sizes its requests with vixfs.nbd.maxRequestKB");
constexpr IntKey kNfcAioBufCount =
    unused_integer("vixDiskLib.nfcAio.Session.BufCount", 0, "accepted; see vixfs.nbd.connections");
constexpr IntKey kHotaddNoNfcSession = unused_integer(
    "vixDiskLib.transport.hotadd.NoNfcSession", 0, "accepted; hotadd never opens an NFC session");
constexpr IntKey kPhoneHomeEnable = unused_integer("vixDiskLib.phoneHome.EnablePhoneHome", 0,
                                                   "accepted; vixfs reports nothing anywhere");
constexpr TextKey kPhoneHomeProduct =
    unused_text("vixDiskLib.phoneHome.ProductName", "accepted; vixfs reports nothing anywhere");
constexpr TextKey kPhoneHomeVersion =
    unused_text("vixDiskLib.phoneHome.ProductVersion", "accepted; vixfs reports nothing anywhere");

constexpr const ConfigKey* kCommonKeys[] = {
    &kTmpDirectory,
    &kLogLevel,
    &kLogFileName,
    &kLogFileLevel,
    &kEnableCache,
    &kVerifyCertificates,
    &kNfcLogLevel,
    &kNfcAcceptTimeout,
    &kNfcRequestTimeout,
    &kNfcReadTimeout,
    &kNfcWriteTimeout,
    &kNfcFssrvrTimeout,
    &kNfcFssrvrWriteTimeout,
    &kNfcAioBufSize,
    &kNfcAioBufCount,
    &kSanBlacklist,
    &kSanDenyList,
    &kSanWhitelist,
    &kSanAllowList,
    &kHotaddNoNfcSession,
    &kPhoneHomeEnable,
    &kPhoneHomeProduct,
    &kPhoneHomeVersion,
    &kServerUrl,
    &kServerUser,
    &kServerPasswordFile,
    &kServerThumbprint,
    &kServerTransports,
};

// Where the NAME segment of a pattern starts (npos when the name has none).
size_t placeholder_at(std::string_view name) {
  for (size_t at = name.find(kKeyPlaceholder); at != std::string_view::npos;
       at = name.find(kKeyPlaceholder, at + 1)) {
    const size_t end = at + kKeyPlaceholder.size();
    if (at > 0 && name[at - 1] == '.' && (end == name.size() || name[end] == '.')) return at;
  }
  return std::string_view::npos;
}

}  // namespace

bool key_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

size_t key_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const size_t substitute = diagonal + (lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool ConfigKey::is_pattern() const {
  return placeholder_at(name) != std::string_view::npos;
}

bool ConfigKey::matches_pattern(std::string_view key, std::string* name_value) const {
  const size_t at = placeholder_at(name);
  if (at == std::string_view::npos) return false;
  const std::string_view prefix = name.substr(0, at);
  const std::string_view suffix = name.substr(at + kKeyPlaceholder.size());
  if (key.size() <= prefix.size() + suffix.size()) return false;
  if (!key_iequals(key.substr(0, prefix.size()), prefix)) return false;
  if (!key_iequals(key.substr(key.size() - suffix.size()), suffix)) return false;
  if (name_value) {
    *name_value =
        std::string(key.substr(prefix.size(), key.size() - prefix.size() - suffix.size()));
  }
  return true;
}

std::string ConfigKey::default_text() const {
  return type == KeyType::kString ? std::string(text_default) : std::to_string(int_default);
}

std::string ConfigKey::range_text() const {
  if (lo == kNoLowerLimit && hi == kNoLimit) return "an integer";
  if (hi == kNoLimit) return std::to_string(lo) + " or more";
  return std::to_string(lo) + ".." + std::to_string(hi);
}

std::string ConfigKey::instance(std::string_view name_value) const {
  std::string out(name);
  out.replace(placeholder_at(name), kKeyPlaceholder.size(), name_value);
  return out;
}

KeyList common_config_keys() {
  return kCommonKeys;
}

}  // namespace vix
