#include <gtest/gtest.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "common/config.h"
#include "common/config_registry.h"
#include "support/fixtures.h"
#include "vix/config_keys.h"
#include "vix/library.h"

namespace {

using vix::Config;
using vix::config_registry;

// Keys of the tests' own, so that their ranges do not depend on a subsystem's choice.
constexpr vix::IntKey kTestCount{"vixfs.test.count", 1, 256, 7, "a test key"};
constexpr vix::IntKey kTestNbd{"vixfs.nbd.testKey", 1, 64, 4, "a per-server test key"};
constexpr vix::FlagKey kTestFlag{"vixfs.test.flag", false, "a test flag"};
constexpr vix::TextKey kTestText{"vixfs.test.text", "dflt", "a test text"};
constexpr vix::PatternKey kTestDatastore{"vixfs.datastore.NAME", "a test pattern"};

TEST(ConfigTest, AcceptsEveryDocumentedKeyWithoutWarnings) {
  const char* keys[] = {
      "tmpDirectory",
      "vixDiskLib.transport.LogLevel",
      "vixDiskLib.disklib.EnableCache",
      "vixDiskLib.linuxSSL.verifyCertificates",
      "vixDiskLib.nfc.LogLevel",
      "vixDiskLib.nfc.AcceptTimeoutMs",
      "vixDiskLib.nfc.RequestTimeoutMs",
      "vixDiskLib.nfc.ReadTimeoutMs",
      "vixDiskLib.nfc.WriteTimeoutMs",
      "vixDiskLib.nfc.ReadTimeoutsMs",
      "vixDiskLib.nfc.WriteTimeoutsMs",
      "vixDiskLib.nfcFssrvr.TimeoutMs",
      "vixDiskLib.nfcFssrvrWrite.TimeoutMs",
      "vixDiskLib.transport.san.blacklist",
      "vixDiskLib.transport.san.whitelist",
  };
  std::string text = "# every VDDK key vixfs.conf(5) lists\n";
  int i = 1;
  for (const char* k : keys) text += std::string(k) + " = \"" + std::to_string(i++) + "\"\n";
  std::vector<std::string> warnings;
  auto cfg = Config::parse(text, "all.conf", &warnings);
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  i = 1;
  for (const char* k : keys) {
    EXPECT_EQ(cfg->get(k), std::to_string(i)) << k;
    const vix::ConfigKey* key = config_registry().find(k);
    ASSERT_NE(key, nullptr) << k;
    const vix::Setting* s = cfg->find(k);
    ASSERT_NE(s, nullptr) << k;
    if (key->type != vix::KeyType::kString) {
      auto n = vix::checked_integer(*key, s->value, s->origin, s->name);
      ASSERT_TRUE(n.ok()) << k;
      EXPECT_EQ(*n, i) << k;
    }
    ++i;
  }
  EXPECT_TRUE(config_registry().unknown_keys(*cfg).empty());
}

TEST(ConfigTest, QuotesCommentsAndBareValues) {
  std::vector<std::string> warnings;
  auto cfg = Config::parse(
      "\n"
      "   # indented comment\n"
      "tmpDirectory = \"/var/tmp/with space\"   # trailing comment\n"
      "vixDiskLib.transport.LogLevel=5\n"
      "vixDiskLib.transport.san.blacklist = /dev/sda # bare value, comment\n"
      "vixfs.server.vc1.url = \"https://vc.example.com\"\n"
      "vixDiskLib.transport.san.whitelist = \"\"\n",
      "q.conf", &warnings);
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(cfg->get("tmpDirectory"), "/var/tmp/with space");
  EXPECT_EQ(cfg->get("vixDiskLib.transport.san.blacklist"), "/dev/sda");
  EXPECT_EQ(*cfg->get(vix::kLogLevel), 5);
  EXPECT_EQ(cfg->get(vix::kServerUrl, "vc1"), "https://vc.example.com");
  EXPECT_EQ(cfg->get(vix::kServerUrl, "vc2"), std::nullopt);
  // Lookups ignore case, as VDDK's keys do.
  EXPECT_EQ(cfg->get("TMPDIRECTORY"), "/var/tmp/with space");
  EXPECT_EQ(cfg->get("absent", "dflt"), "dflt");
  EXPECT_TRUE(cfg->has("vixDiskLib.transport.san.whitelist"));
  EXPECT_EQ(cfg->get("vixDiskLib.transport.san.whitelist", "x"), "");
  EXPECT_EQ(*cfg->get(kTestCount), 7);
  EXPECT_EQ(*cfg->get(kTestCount, 42), 42);
  EXPECT_FALSE(*cfg->get(kTestFlag));
  EXPECT_EQ(cfg->get(kTestText), "dflt");
}

TEST(ConfigTest, AlternateSpellingIsReadWhenTheKeyIsNot) {
  auto cfg = Config::parse("vixDiskLib.nfc.ReadTimeoutsMs = \"1500\"\n", "a.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(*cfg->get(vix::kNfcReadTimeout), 1500);
  EXPECT_EQ(*cfg->get(vix::kNfcWriteTimeout), 600000);
  // Both spellings: the key's own name wins, wherever it is.
  auto both = Config::parse(
      "vixDiskLib.nfc.ReadTimeoutMs = 10\nvixDiskLib.nfc.ReadTimeoutsMs = 20\n", "b.conf", nullptr);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(*both->get(vix::kNfcReadTimeout), 10);
}

TEST(ConfigTest, RangeErrorsNameOriginKeyValueAndRange) {
  auto cfg = Config::parse("vixfs.test.count = 5\n", "r.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(*cfg->get(kTestCount), 5);
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"vixfs.test.count = 0\n", "r.conf:1: vixfs.test.count = 0: expected 1..256"},
      {"\n\nvixfs.test.count = 300\n", "r.conf:3: vixfs.test.count = 300: expected 1..256"},
      {"vixfs.test.count = many\n", "r.conf:1: vixfs.test.count = many: expected 1..256"},
      {"VIXFS.TEST.COUNT = 0\n", "r.conf:1: VIXFS.TEST.COUNT = 0: expected 1..256"},
  };
  for (const Case& c : cases) {
    auto bad = Config::parse(c.text, "r.conf", nullptr);
    ASSERT_TRUE(bad.ok()) << c.text;
    auto v = bad->get(kTestCount);
    ASSERT_FALSE(v.ok()) << c.text;
    EXPECT_EQ(v.error().code, static_cast<VixError>(VIX_E_INVALID_ARG));
    EXPECT_EQ(v.error().message, c.message);
  }

  Config set;
  set.set("vixfs.test.count", "257");
  EXPECT_EQ(set.get(kTestCount).error().message,
            "command line: vixfs.test.count = 257: expected 1..256");
  // A default from the reader's context is checked too, and says so.
  EXPECT_EQ(Config().get(kTestCount, 0).error().message,
            "default: vixfs.test.count = 0: expected 1..256");
  set.set("vixfs.test.flag", "2");
  EXPECT_EQ(set.get(kTestFlag).error().message, "command line: vixfs.test.flag = 2: expected 0..1");
  set.set("vixfs.test.flag", "1");
  EXPECT_TRUE(*set.get(kTestFlag));
  // VDDK's timeouts have no upper bound.
  set.set("vixDiskLib.nfc.AcceptTimeoutMs", "-1");
  EXPECT_EQ(set.get(vix::kNfcAcceptTimeout).error().message,
            "command line: vixDiskLib.nfc.AcceptTimeoutMs = -1: expected 0 or more");
  // The alias spelling is the one named.
  auto alias = Config::parse("vixDiskLib.nfc.WriteTimeoutsMs = -5\n", "w.conf", nullptr);
  ASSERT_TRUE(alias.ok());
  EXPECT_EQ(alias->get(vix::kNfcWriteTimeout).error().message,
            "w.conf:1: vixDiskLib.nfc.WriteTimeoutsMs = -5: expected 0 or more");
}

TEST(ConfigTest, PerServerKeysStandInForGlobalOnesAndKeepTheirOrigin) {
  auto cfg = Config::parse(
      "vixfs.nbd.testKey = 2\n"
      "vixfs.server.lab.nbd.testKey = 0\n"
      "vixfs.server.lab.datastore.ds1 = /mnt/lab\n"
      "vixfs.datastore.ds1 = /mnt/global\n",
      "s.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(*cfg->get(kTestNbd), 2);
  const Config lab = cfg->scoped("lab");
  EXPECT_EQ(lab.get(kTestNbd).error().message,
            "s.conf:2: vixfs.server.lab.nbd.testKey = 0: expected 1..64");
  EXPECT_EQ(lab.get(kTestDatastore, "ds1"), "/mnt/lab");
  EXPECT_EQ(cfg->get(kTestDatastore, "DS1"), "/mnt/global");  // names ignore case
  EXPECT_EQ(cfg->scoped("other").get(kTestDatastore, "ds1"), "/mnt/global");
  EXPECT_EQ(cfg->get(kTestDatastore, "ds2"), std::nullopt);
  EXPECT_EQ(lab.find("vixfs.datastore.ds1")->origin, "s.conf:3");
}

TEST(ConfigTest, MalformedLinesNameFileAndLine) {
  struct Case {
    const char* text;
    const char* where;
  } cases[] = {
      {"tmpDirectory = \"/tmp\"\n# ok\nthis line has no equals sign\n", "bad.conf:3"},
      {"tmpDirectory = \"/tmp\n", "bad.conf:1"},
      {"\n\ntmpDirectory = \"/tmp\" junk\n", "bad.conf:3"},
      {"bad key = 1\n", "bad.conf:1"},
      {" = 1\n", "bad.conf:1"},
      {"\nvixDiskLib.transport.LogLevel = \"loud\"\n", "bad.conf:2"},
      {"tmpDirectory = /tmp\"x\n", "bad.conf:1"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> warnings;
    auto cfg = Config::parse(c.text, "bad.conf", &warnings);
    ASSERT_FALSE(cfg.ok()) << c.text;
    EXPECT_EQ(cfg.error().code, static_cast<VixError>(VIX_E_INVALID_ARG));
    EXPECT_NE(cfg.error().message.find(c.where), std::string::npos)
        << c.text << " -> " << cfg.error().message;
  }
}

TEST(ConfigTest, UnknownKeyIsAWarningNamingIt) {
  std::vector<std::string> warnings;
  auto cfg =
      Config::parse("tmpDirectory=/tmp\nvixDiskLib.bogus.Key = \"1\"\n", "u.conf", &warnings);
  ASSERT_TRUE(cfg.ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("u.conf:2"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("vixDiskLib.bogus.Key"), std::string::npos) << warnings[0];
}

TEST(ConfigTest, VerifyCertificatesZeroIsAcceptedWithAWarning) {
  std::vector<std::string> warnings;
  auto cfg = Config::parse("vixDiskLib.linuxSSL.verifyCertificates = \"0\"\n", "v.conf", &warnings);
  ASSERT_TRUE(cfg.ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("verifyCertificates"), std::string::npos);
  EXPECT_NE(warnings[0].find("always verified"), std::string::npos);

  warnings.clear();
  ASSERT_TRUE(
      Config::parse("vixDiskLib.linuxSSL.verifyCertificates = 1\n", "v.conf", &warnings).ok());
  EXPECT_TRUE(warnings.empty());
}

TEST(ConfigTest, LoadFileReadsAndReportsMissingFiles) {
  vixtest::TempDir dir;
  vixtest::write_file(dir.file("vixfs.conf"), std::string("vixDiskLib.nfc.LogLevel = \"2\"\n"));
  std::vector<std::string> warnings;
  auto cfg = Config::load_file(dir.file("vixfs.conf"), &warnings);
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_EQ(cfg->get("vixDiskLib.nfc.LogLevel"), "2");

  auto missing = Config::load_file(dir.file("nope.conf"), &warnings);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, static_cast<VixError>(VIX_E_FILE_NOT_FOUND));
  EXPECT_NE(missing.error().message.find("nope.conf"), std::string::npos);
}

TEST(ConfigTest, OversizedTextIsRejected) {
  std::string text((1 << 20) + 10, '#');
  auto cfg = Config::parse(text, "big.conf", nullptr);
  ASSERT_FALSE(cfg.ok());
  EXPECT_NE(cfg.error().message.find("big.conf"), std::string::npos);
}

TEST(ConfigTest, SetOverridesCanonicalKey) {
  auto cfg = Config::parse("tmpdirectory = /a\n", "s.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  cfg->set("tmpDirectory", "/b");
  EXPECT_EQ(cfg->get("tmpDirectory"), "/b");
  EXPECT_EQ(cfg->settings().size(), 1u);
}

TEST(ConfigTest, OriginsAreFileAndLineCommandLineOrDefault) {
  vixtest::TempDir dir;
  const std::string path = dir.file("o.conf");
  vixtest::write_file(path, std::string("# comment\n\nvixfs.nbd.port = 1\nvixfs.nbd.port = 2\n"));
  std::vector<std::string> warnings;
  auto cfg = Config::load_file(path, &warnings);
  ASSERT_TRUE(cfg.ok());
  ASSERT_NE(cfg->find("vixfs.nbd.port"), nullptr);
  EXPECT_EQ(cfg->find("vixfs.nbd.port")->origin, path + ":4");  // the last one wins
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], path + ":4: 'vixfs.nbd.port' set again; the last value wins");
  cfg->set("vixfs.nbd.port", "3");
  EXPECT_EQ(cfg->find("vixfs.nbd.port")->origin, "command line");
  cfg->set("vixDiskLib.disklib.enablecache", "1", vix::kOriginDefault);
  const vix::Setting* cache = cfg->find(vix::kEnableCache);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(cache->origin, "default");
  EXPECT_EQ(cache->name, "vixDiskLib.disklib.EnableCache");  // VDDK's spelling
  EXPECT_EQ(cfg->find("vixfs.nbd.server"), nullptr);
}

TEST(ConfigTest, UnknownVixfsKeysWarnWithTheNearestKnownKey) {
  auto cfg = Config::parse(
      "vixfs.nbd.port = 1\n"                   // 1
      "VIXFS.NBD.CONNECTIONS = 2\n"            // 2: any case
      "vixfs.server.lab.nbd.conections = 3\n"  // 3
      "vixfs.server.lab.url = https://lab\n"   // 4
      "vixfs.server.a.b.datastore.ds1 = /d\n"  // 5: an alias with a dot
      "vixfs.datastore.LocalDS_0 = /e\n"       // 6
      "vixfs.sever.lab.url = https://x\n"      // 7
      "vixfs.zzzzzzzzzzzz = 1\n"               // 8: nothing is close
      "vixDiskLib.nfc.ReadTimeoutsMs = 5\n"    // 9
      "vixfs.cache.chunkSize = 64\n"           // 10
      "linuxSSL.verifyCertificates = 1\n"      // 11
      "vixfs.nbd.conections = 8\n",            // 12
      "vixfs.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  const std::vector<std::string> expected = {
      "vixfs.conf:3: unknown key vixfs.server.lab.nbd.conections "
      "(did you mean vixfs.server.lab.nbd.connections?)",
      "vixfs.conf:7: unknown key vixfs.sever.lab.url (did you mean vixfs.server.lab.url?)",
      "vixfs.conf:8: unknown key vixfs.zzzzzzzzzzzz ignored",
      "vixfs.conf:10: unknown key vixfs.cache.chunkSize (did you mean vixfs.cache.chunkKB?)",
      "vixfs.conf:12: unknown key vixfs.nbd.conections (did you mean vixfs.nbd.connections?)",
  };
  EXPECT_EQ(config_registry().unknown_keys(*cfg), expected);
  EXPECT_EQ(config_registry().nearest("vixfs.fuse.thread"), "vixfs.fuse.threads");
  EXPECT_EQ(config_registry().nearest("vixDiskLib.nfc.ReadTimeotMs"),
            "vixDiskLib.nfc.ReadTimeoutMs");
}

// Library::init is where every program's configuration is loaded: the warnings reach the log.
std::mutex g_warn_mu;
std::vector<std::string> g_warns;
void warn_cb(const char* fmt, va_list args) {
  char buf[2048];
  vsnprintf(buf, sizeof buf, fmt, args);
  std::lock_guard lock(g_warn_mu);
  g_warns.emplace_back(buf);
}
void quiet_cb(const char*, va_list) {}

TEST(ConfigTest, LibraryInitWarnsAboutUnknownKeysAndChecksRanges) {
  vixtest::TempDir dir;
  const std::string conf = dir.file("vixfs.conf");
  vixtest::write_file(conf, std::string("vixfs.asyncWorkers = 2\nvixfs.asyncWorker = 3\n"));
  g_warns.clear();
  ASSERT_TRUE(vix::Library::init({quiet_cb, warn_cb, warn_cb}, "", conf).ok());
  vix::Library::exit();
  bool found = false;
  for (const std::string& w : g_warns) {
    found |=
        w.find(conf + ":2: unknown key vixfs.asyncWorker (did you mean vixfs.asyncWorkers?)") !=
        std::string::npos;
  }
  EXPECT_TRUE(found);

  vixtest::write_file(conf, std::string("\nvixfs.asyncWorkers = 65\n"));
  auto r = vix::Library::init({quiet_cb, warn_cb, warn_cb}, "", conf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, conf + ":2: vixfs.asyncWorkers = 65: expected 1..64");
  EXPECT_EQ(vix::Library::get(), nullptr);
}

TEST(ConfigTest, RegistryDeclarationsAreConsistent) {
  std::set<std::string> names;
  for (const vix::ConfigKey* k : config_registry().keys()) {
    std::string lower(k->name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_TRUE(names.insert(lower).second) << "declared twice: " << k->name;
    EXPECT_FALSE(k->doc.empty()) << k->name;
    EXPECT_EQ(config_registry().find(k->is_pattern() ? k->instance("x") : std::string(k->name)), k);
    if (k->type != vix::KeyType::kString) {
      EXPECT_LE(k->lo, k->int_default) << k->name;
      EXPECT_LE(k->int_default, k->hi) << k->name;
    }
  }
  EXPECT_EQ(config_registry().find("vixfs.server.lab.nbd.port"),
            config_registry().find("vixfs.nbd.port"));
  EXPECT_EQ(config_registry().find("vixfs.server.lab.url"), &vix::kServerUrl);
  EXPECT_EQ(config_registry().find("vixfs.server.lab.nbd.bogus"), nullptr);
  EXPECT_EQ(config_registry().find("vixfs.datastore."), nullptr);
}

TEST(ConfigTest, DumpListsEveryKeyWithValueAndOrigin) {
  auto cfg = Config::parse(
      "vixfs.nbd.connections = 8\n"
      "vixDiskLib.nfc.ReadTimeoutsMs = 1500\n"
      "vixfs.datastore.ds1 = /mnt/ds1\n"
      "vixfs.server.lab.url = https://lab\n"
      "vixfs.server.lab.nbd.port = 10810\n"
      "vixfs.bogus = 1\n",
      "d.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  cfg->set("vixfs.cache.maxMB", "64");
  const std::vector<std::string> lines = config_registry().dump(*cfg);
  auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  EXPECT_TRUE(has("vixfs.nbd.connections = \"8\"  # d.conf:1"));
  EXPECT_TRUE(
      has("vixDiskLib.nfc.ReadTimeoutMs = \"1500\"  # d.conf:2 (as "
          "vixDiskLib.nfc.ReadTimeoutsMs)"));
  EXPECT_TRUE(has("vixfs.datastore.ds1 = \"/mnt/ds1\"  # d.conf:3"));
  EXPECT_TRUE(has("vixfs.server.lab.url = \"https://lab\"  # d.conf:4"));
  EXPECT_TRUE(has("vixfs.server.lab.nbd.port = \"10810\"  # d.conf:5"));
  EXPECT_TRUE(has("vixfs.cache.maxMB = \"64\"  # command line"));
  EXPECT_TRUE(has("vixfs.nbd.port = \"10809\"  # default"));
  EXPECT_TRUE(has("vixfs.tls.caFile = \"\"  # default"));
  EXPECT_TRUE(has("vixfs.cache.chunkKB = \"1024\"  # default (4096 for https)"));
  for (const std::string& l : lines) EXPECT_EQ(l.find("bogus"), std::string::npos) << l;
  // One line per declaration that is not a pattern, plus the three set keys of families.
  size_t plain = 0;
  for (const vix::ConfigKey* k : config_registry().keys()) plain += k->is_pattern() ? 0 : 1;
  EXPECT_EQ(lines.size(), plain + 3);
  auto name_of = [](const std::string& l) { return l.substr(0, l.find(' ')); };
  EXPECT_TRUE(std::is_sorted(lines.begin(), lines.end(), [&](const auto& a, const auto& b) {
    std::string x = name_of(a), y = name_of(b);
    for (std::string* s : {&x, &y})
      for (char& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return x < y;
  }));
  EXPECT_EQ(config_registry().dump(*cfg), lines);  // stable
  // The dump is itself a configuration file that loads without a warning.
  std::string text;
  for (const std::string& l : lines) text += l + "\n";
  std::vector<std::string> warnings;
  auto again = Config::parse(text, "dump", &warnings);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  EXPECT_TRUE(config_registry().unknown_keys(*again).empty());
  EXPECT_EQ(again->get(vix::kNfcReadTimeout).value(), 1500);

  auto bad = Config::parse("vixfs.server.lab.nbd.connections = 0\nvixfs.cache.threads = x\n",
                           "e.conf", nullptr);
  ASSERT_TRUE(bad.ok());
  const std::vector<std::string> errors = {
      "e.conf:1: vixfs.server.lab.nbd.connections = 0: expected 1..64",
      "e.conf:2: vixfs.cache.threads = x: expected 1..64",
  };
  EXPECT_EQ(config_registry().invalid_values(*bad), errors);
}

// The key names man/vixfs.conf.5 documents: the tags (.TP/.TQ lines) of its KEYS section, with
// fonts and roff escapes removed. A tag names a key first, and may give other spellings after it.
std::set<std::string> man_page_keys() {
  std::ifstream in(std::string(VIXFS_SOURCE_DIR) + "/man/vixfs.conf.5");
  EXPECT_TRUE(in.good());
  std::set<std::string> keys;
  std::string line;
  bool in_keys = false, tag_next = false;
  while (std::getline(in, line)) {
    if (line.rfind(".SH", 0) == 0) in_keys = line == ".SH KEYS";
    if (!in_keys) continue;
    if (line == ".TP" || line == ".TQ") {
      tag_next = true;
      continue;
    }
    if (!tag_next) continue;
    tag_next = false;
    // Macro arguments: .B joins them with spaces, .BR/.BI/... without (alternating fonts).
    std::string text;
    if (line[0] == '.') {
      const size_t space = line.find(' ');
      const std::string macro = line.substr(0, space);
      const bool joined = macro.size() == 3;
      bool quoted = false;
      for (char c : line.substr(space + 1)) {
        if (c == '"') {
          quoted = !quoted;
        } else if (c != ' ' || quoted || !joined) {
          text += c;
        }
      }
    } else {
      text = line;
    }
    std::string plain;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '\\' || i + 1 >= text.size()) {
        plain += text[i];
      } else if (text[i + 1] == 'f') {
        i += 2;  // \fB, \fI, \fR
      } else {
        plain += text[++i];  // \- and "\ "
      }
    }
    std::istringstream words(plain);
    std::string word;
    bool first = true;
    while (words >> word) {
      while (!word.empty() && std::string("(),").find(word.back()) != std::string::npos) {
        word.pop_back();
      }
      while (!word.empty() && word.front() == '(') word.erase(0, 1);
      if (first || word.find('.') != std::string::npos) keys.insert(word);
      first = false;
    }
  }
  return keys;
}

TEST(ConfigTest, ManPageListsEveryRegisteredKeyAndNothingElse) {
  const std::set<std::string> man = man_page_keys();
  ASSERT_GT(man.size(), 40u);
  std::set<std::string> registered;
  for (const vix::ConfigKey* k : config_registry().keys()) {
    registered.emplace(k->name);
    if (!k->alias.empty()) registered.emplace(k->alias);
  }
  for (const std::string& name : registered) {
    EXPECT_TRUE(man.count(name)) << name << " is registered but not in man/vixfs.conf.5";
  }
  for (const std::string& name : man) {
    // vixfs.server.NAME.nbd.KEY and .datastore.DS stand for every nbd and datastore key.
    if (name.find(".KEY") != std::string::npos || name.find(".DS") != std::string::npos) {
      std::string example = name.substr(0, name.rfind('.')) + (name.back() == 'Y' ? ".port" : ".d");
      example.replace(example.find("NAME"), 4, "lab");
      EXPECT_NE(config_registry().find(example), nullptr) << name << " (as " << example << ")";
      continue;
    }
    EXPECT_TRUE(registered.count(name)) << name << " is in man/vixfs.conf.5 but not registered";
  }
}

// The programs print the same registry: vixfs with the daemon's own default for the cache.
TEST(ConfigTest, VixfsDumpConfigAndVixdiskConfigPrintTheRegistry) {
  vixtest::TempDir dir;
  const std::string conf = dir.file("vixfs.conf");
  vixtest::write_file(conf, std::string("vixfs.nbd.connections = 8\nvixfs.nbd.conections = 9\n"));
  const std::string err = dir.file("err");
  const std::string vixfs = vixtest::sh_quote(VIXFS_BINARY);
  const std::string vixdisk = vixtest::sh_quote(VIXFS_VIXDISK);
  auto lines_of = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  };
  auto contains = [](const std::vector<std::string>& v, const std::string& line) {
    return std::find(v.begin(), v.end(), line) != v.end();
  };
  const std::string warning =
      conf + ":2: unknown key vixfs.nbd.conections (did you mean " + "vixfs.nbd.connections?)";

  auto fs = vixtest::run(vixfs + " --config " + vixtest::sh_quote(conf) + " --dump-config 2>" +
                         vixtest::sh_quote(err));
  ASSERT_EQ(fs.exit_code, 0) << fs.output;
  const std::vector<std::string> fs_lines = lines_of(fs.output);
  auto expected = Config::load_file(conf, nullptr);
  ASSERT_TRUE(expected.ok());
  expected->set("vixDiskLib.disklib.EnableCache", "1", vix::kOriginDefault);
  EXPECT_EQ(fs_lines, config_registry().dump(*expected));
  EXPECT_TRUE(contains(fs_lines, "vixfs.nbd.connections = \"8\"  # " + conf + ":1"));
  EXPECT_TRUE(contains(fs_lines, "vixDiskLib.disklib.EnableCache = \"1\"  # default"));
  EXPECT_EQ(fs_lines.size(), config_registry().dump(Config()).size());
  EXPECT_TRUE(contains(lines_of(vixtest::run("cat " + vixtest::sh_quote(err)).output),
                       "vixfs: warning: " + warning));

  auto no_cache = vixtest::run(vixfs + " --no-cache --config " + vixtest::sh_quote(conf) +
                               " --dump-config 2>/dev/null");
  EXPECT_TRUE(contains(lines_of(no_cache.output),
                       "vixDiskLib.disklib.EnableCache = \"0\"  # command line"));

  auto disk = vixtest::run(vixdisk + " config --config " + vixtest::sh_quote(conf) + " 2>" +
                           vixtest::sh_quote(err));
  ASSERT_EQ(disk.exit_code, 0) << disk.output;
  const std::vector<std::string> disk_lines = lines_of(disk.output);
  EXPECT_TRUE(contains(disk_lines, "vixfs.nbd.connections = \"8\"  # " + conf + ":1"));
  EXPECT_TRUE(
      contains(disk_lines, "vixDiskLib.disklib.EnableCache = \"0\"  # default (1 for vixfs)"));
  EXPECT_EQ(disk_lines.size(), fs_lines.size());
  EXPECT_TRUE(contains(lines_of(vixtest::run("cat " + vixtest::sh_quote(err)).output),
                       "vixdisk: warning: " + warning));

  // A value out of range: everything is still printed, the error named, the status not 0.
  vixtest::write_file(conf, std::string("vixfs.fuse.threads = 0\n"));
  auto bad_fs = vixtest::run(vixfs + " --config " + vixtest::sh_quote(conf) + " --dump-config");
  EXPECT_EQ(bad_fs.exit_code, 1);
  EXPECT_NE(bad_fs.output.find("vixfs: " + conf + ":1: vixfs.fuse.threads = 0: expected 1..256"),
            std::string::npos)
      << bad_fs.output;
  auto bad_disk = vixtest::run(vixdisk + " config --config " + vixtest::sh_quote(conf));
  EXPECT_EQ(bad_disk.exit_code, 2);
  EXPECT_NE(bad_disk.output.find("vixfs.fuse.threads = \"0\"  # " + conf + ":1"),
            std::string::npos);

  // A file that does not load.
  auto missing =
      vixtest::run(vixfs + " --config " + vixtest::sh_quote(dir.file("nope")) + " --dump-config");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("nope"), std::string::npos);
  EXPECT_EQ(vixtest::run(vixdisk + " config extra").exit_code, 1);
}

}  // namespace
