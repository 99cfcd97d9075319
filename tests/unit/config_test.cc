#include <gtest/gtest.h>

#include "common/config.h"
#include "support/fixtures.h"

namespace {

using vix::Config;

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
  std::string text = "# every key DESIGN.md lists\n";
  int i = 1;
  for (const char* k : keys) text += std::string(k) + " = \"" + std::to_string(i++) + "\"\n";
  std::vector<std::string> warnings;
  auto cfg = Config::parse(text, "all.conf", &warnings);
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  i = 1;
  for (const char* k : keys) {
    EXPECT_EQ(cfg->get(k), std::to_string(i)) << k;
    auto n = cfg->get_int(k, -1);
    ASSERT_TRUE(n.ok()) << k;
    EXPECT_EQ(*n, i) << k;
    ++i;
  }
}

TEST(ConfigTest, QuotesCommentsAndBareValues) {
  std::vector<std::string> warnings;
  auto cfg = Config::parse(
      "\n"
      "   # indented comment\n"
      "tmpDirectory = \"/var/tmp/with space\"   # trailing comment\n"
      "vixDiskLib.transport.LogLevel=5\n"
      "vixDiskLib.transport.san.blacklist = /dev/sda # bare value, comment\n"
      "vixfs.server.vc1.host = \"vc.example.com\"\n"
      "vixDiskLib.transport.san.whitelist = \"\"\n",
      "q.conf", &warnings);
  ASSERT_TRUE(cfg.ok()) << cfg.error().message;
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(cfg->get("tmpDirectory"), "/var/tmp/with space");
  EXPECT_EQ(cfg->get("vixDiskLib.transport.san.blacklist"), "/dev/sda");
  EXPECT_EQ(*cfg->get_int("vixDiskLib.transport.LogLevel", 3), 5);
  EXPECT_EQ(cfg->get("vixfs.server.vc1.host"), "vc.example.com");
  // Lookups ignore case, as VDDK's keys do.
  EXPECT_EQ(cfg->get("TMPDIRECTORY"), "/var/tmp/with space");
  EXPECT_EQ(cfg->get("absent", "dflt"), "dflt");
  EXPECT_TRUE(cfg->has("vixDiskLib.transport.san.whitelist"));
  EXPECT_EQ(cfg->get("vixDiskLib.transport.san.whitelist", "x"), "");
  EXPECT_EQ(*cfg->get_int("absent", 42), 42);
}

TEST(ConfigTest, AlternateSpellingsThroughGetIntAny) {
  auto cfg = Config::parse("vixDiskLib.nfc.ReadTimeoutsMs = \"1500\"\n", "a.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  auto v = cfg->get_int_any({"vixDiskLib.nfc.ReadTimeoutMs", "vixDiskLib.nfc.ReadTimeoutsMs"}, 0);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 1500);
}

TEST(ConfigTest, RangeCheckedIntegersNameKeyValueAndRange) {
  auto cfg = Config::parse("a = 5\nb = 0\nc = 300\nd = many\n", "r.conf", nullptr);
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(*cfg->get_int_in("a", 1, 1, 256), 5);
  EXPECT_EQ(*cfg->get_int_in("absent", 7, 1, 256), 7);
  auto low = cfg->get_int_in("b", 1, 1, 256);
  ASSERT_FALSE(low.ok());
  EXPECT_EQ(low.error().code, VIX_E_INVALID_ARG);
  EXPECT_EQ(low.error().message, "b = 0: expected 1..256");
  auto high = cfg->get_int_in("c", 1, 1, 256);
  ASSERT_FALSE(high.ok());
  EXPECT_EQ(high.error().message, "c = 300: expected 1..256");
  auto word = cfg->get_int_in("d", 1, 1, 256);
  ASSERT_FALSE(word.ok());
  EXPECT_NE(word.error().message.find("is not an integer"), std::string::npos);
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

}  // namespace
