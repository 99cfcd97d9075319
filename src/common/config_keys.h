// Declarations of configuration keys: name, type, range, default and a one-line doc. A
// subsystem declares its keys next to the code that reads them and reads them through the
// declaration (Config::get(kKey)), so types and ranges are checked in one place and every range
// error reads the same. KeyRegistry (common/config_registry.h) gathers the declarations for the
// unknown-key warnings and the dumps.
//
// Declared here are the keys common itself interprets: VDDK's (Config::parse checks their types
// and spelling, so they live with the parser) and the per-server section vixfs.server.NAME.*
// (Config::scoped and server_aliases read it).
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>

namespace vix {

enum class KeyType { kString, kInteger, kFlag };  // kFlag: an integer 0 or 1

inline constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
inline constexpr int64_t kNoLowerLimit = std::numeric_limits<int64_t>::min();

// The placeholder segment of a pattern key: vixfs.datastore.NAME, vixfs.server.NAME.url.
inline constexpr std::string_view kKeyPlaceholder = "NAME";

// What every declaration has; the typed declarations below make Config::get return the type.
struct ConfigKey {
  std::string_view name;
  KeyType type = KeyType::kString;
  int64_t lo = 0, hi = 0;  // integers and flags
  int64_t int_default = 0;
  std::string_view text_default;
  std::string_view doc;
  std::string_view alias;  // a second spelling VDDK accepts; the key's own name wins
  // Set when the reader's default depends on more than the key (the transport, the kind of
  // mount): says how, for dumps.
  std::string_view default_note;

  bool is_pattern() const;
  // Whether `key` (any case) is this pattern with a non-empty NAME; *name_value gets that NAME.
  bool matches_pattern(std::string_view key, std::string* name_value = nullptr) const;
  std::string instance(std::string_view name_value) const;  // a pattern's NAME replaced
  std::string default_text() const;                         // the default as a config value
  std::string range_text() const;                           // "1..64", "0 or more", "an integer"
};

struct KeyExtra {
  std::string_view alias;
  std::string_view default_note;
};
constexpr KeyExtra also_spelled(std::string_view alias) {
  return KeyExtra{alias, {}};
}
constexpr KeyExtra default_varies(std::string_view note) {
  return KeyExtra{{}, note};
}

struct IntKey : ConfigKey {
  constexpr IntKey(std::string_view n, int64_t low, int64_t high, int64_t dflt, std::string_view d,
                   KeyExtra x = {})
      : ConfigKey{n, KeyType::kInteger, low, high, dflt, {}, d, x.alias, x.default_note} {}
};

struct FlagKey : ConfigKey {
  constexpr FlagKey(std::string_view n, bool dflt, std::string_view d, KeyExtra x = {})
      : ConfigKey{n, KeyType::kFlag, 0, 1, dflt ? 1 : 0, {}, d, x.alias, x.default_note} {}
};

struct TextKey : ConfigKey {
  constexpr TextKey(std::string_view n, std::string_view dflt, std::string_view d, KeyExtra x = {})
      : ConfigKey{n, KeyType::kString, 0, 0, 0, dflt, d, x.alias, x.default_note} {}
};

// A family of string keys, one per NAME (a datastore, a server alias).
struct PatternKey : ConfigKey {
  constexpr PatternKey(std::string_view n, std::string_view d)
      : ConfigKey{n, KeyType::kString, 0, 0, 0, {}, d, {}, {}} {}
};

// A subsystem's declarations, as the registry takes them.
using KeyList = std::span<const ConfigKey* const>;

// The keys of a vixfs.server.NAME section that stand in for global keys of that server's
// connections (Config::scoped): vixfs.server.NAME.nbd.port for vixfs.nbd.port.
inline constexpr std::string_view kScopedPrefixes[] = {"nbd.", "datastore."};

// --- VDDK's keys (docs/reference/vddk-abi.md §7) ----------------------
inline constexpr TextKey kTmpDirectory{
    "tmpDirectory", "", "folder for temporary files, the hotadd journal and the daemon's log",
    default_varies("$TMPDIR, else /tmp")};
inline constexpr IntKey kLogLevel{"vixDiskLib.transport.LogLevel", kNoLowerLimit, kNoLimit, 3,
                                  "how much the library logs (0 panics .. 6 debugging)"};
inline constexpr TextKey kLogFileName{"log.fileName", "",
                                      "a file that gets the library's log as well"};
inline constexpr IntKey kEnableCache{"vixDiskLib.disklib.EnableCache",
                                     kNoLowerLimit,
                                     kNoLimit,
                                     0,
                                     "not 0: a read-ahead cache in front of each opened disk",
                                     default_varies("1 for vixfs")};
inline constexpr IntKey kVerifyCertificates{
    "vixDiskLib.linuxSSL.verifyCertificates",
    kNoLowerLimit,
    kNoLimit,
    1,
    "accepted; 0 is ignored with a warning (TLS peers are always verified)",
    also_spelled("linuxSSL.verifyCertificates")};
inline constexpr IntKey kNfcAcceptTimeout{
    "vixDiskLib.nfc.AcceptTimeoutMs", 0, kNoLimit, 180000,
    "nbd: ms to connect and complete the handshake (0: no limit)"};
inline constexpr IntKey kNfcRequestTimeout{
    "vixDiskLib.nfc.RequestTimeoutMs", 0, kNoLimit, 180000,
    "nbd: ms a request may spend re-establishing a dropped connection (0: no limit)"};
inline constexpr IntKey kNfcReadTimeout{
    "vixDiskLib.nfc.ReadTimeoutMs",
    0,
    kNoLimit,
    60000,
    "nbd, nbdssl: ms to wait for one read's replies; https: ms with no byte (0: no limit)",
    also_spelled("vixDiskLib.nfc.ReadTimeoutsMs")};
inline constexpr IntKey kNfcWriteTimeout{
    "vixDiskLib.nfc.WriteTimeoutMs",
    0,
    kNoLimit,
    600000,
    "nbd: ms to wait for one write's or flush's replies (0: no limit)",
    also_spelled("vixDiskLib.nfc.WriteTimeoutsMs")};
inline constexpr TextKey kSanBlacklist{"vixDiskLib.transport.san.blacklist", "",
                                       "san: device paths never opened, or all"};
inline constexpr TextKey kSanDenyList{"vixDiskLib.transport.san.denyList", "",
                                      "san: the same as vixDiskLib.transport.san.blacklist"};
inline constexpr TextKey kSanWhitelist{"vixDiskLib.transport.san.whitelist", "",
                                       "san: device paths always allowed"};
inline constexpr TextKey kSanAllowList{"vixDiskLib.transport.san.allowList", "",
                                       "san: the same as vixDiskLib.transport.san.whitelist"};

// --- The per-server section (the daemon mounts every NAME with a url) ------------------------
inline constexpr PatternKey kServerUrl{"vixfs.server.NAME.url",
                                       "https://HOST[:PORT] of server NAME"};
inline constexpr PatternKey kServerUser{"vixfs.server.NAME.user",
                                        "the vSphere user of server NAME"};
inline constexpr PatternKey kServerPasswordFile{
    "vixfs.server.NAME.passwordFile", "a file whose first line is server NAME's password"};
inline constexpr PatternKey kServerThumbprint{"vixfs.server.NAME.thumbprint",
                                              "server NAME's certificate thumbprint"};
inline constexpr PatternKey kServerTransports{"vixfs.server.NAME.transports",
                                              "the transport list for server NAME's disks"};

// Every declaration above, and VDDK's keys that nothing reads (accepted so that VDDK's files load).
KeyList common_config_keys();

// Levenshtein distance, ignoring case: how the registry finds the key a misspelt one meant.
size_t key_distance(std::string_view a, std::string_view b);

bool key_iequals(std::string_view a, std::string_view b);

}  // namespace vix
