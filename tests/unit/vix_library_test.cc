#include <gtest/gtest.h>

#include <cstdarg>
#include <cstdio>
#include <future>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "support/fixtures.h"
#include "transports/transport.h"
#include "vix/errors.h"
#include "vix/library.h"

namespace {

std::mutex g_mu;
std::vector<std::string> g_logs, g_warns;

void capture(std::vector<std::string>& into, const char* fmt, va_list args) {
  char buf[2048];
  vsnprintf(buf, sizeof buf, fmt, args);
  std::lock_guard lock(g_mu);
  into.emplace_back(buf);
}
void log_cb(const char* fmt, va_list args) {
  capture(g_logs, fmt, args);
}
void warn_cb(const char* fmt, va_list args) {
  capture(g_warns, fmt, args);
}

bool any_contains(const std::vector<std::string>& v, const std::string& needle) {
  std::lock_guard lock(g_mu);
  for (const auto& s : v)
    if (s.find(needle) != std::string::npos) return true;
  return false;
}

class VixLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::lock_guard lock(g_mu);
    g_logs.clear();
    g_warns.clear();
  }
  void TearDown() override { vix::Library::exit(); }
};

TEST_F(VixLibraryTest, InitTwiceFailsUntilExit) {
  ASSERT_EQ(vix::Library::get(), nullptr);
  ASSERT_TRUE(vix::Library::init({}, "", "").ok());
  ASSERT_NE(vix::Library::get(), nullptr);
  auto again = vix::Library::init({}, "", "");
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("already initialized"), std::string::npos);
  vix::Library::exit();
  EXPECT_EQ(vix::Library::get(), nullptr);
  EXPECT_TRUE(vix::Library::init({}, "", "").ok());
}

TEST_F(VixLibraryTest, MalformedConfigFailsInitNamingFileAndLine) {
  vixtest::TempDir dir;
  std::string conf = dir.file("vddk.conf");
  vixtest::write_file(conf, std::string("tmpDirectory = \"/tmp\"\nnot a config line\n"));
  auto r = vix::Library::init({log_cb, warn_cb, warn_cb}, "", conf);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(conf + ":2"), std::string::npos) << r.error().message;
  EXPECT_EQ(vix::Library::get(), nullptr);
}

TEST_F(VixLibraryTest, ConfigWarningsGoToTheWarnCallback) {
  vixtest::TempDir dir;
  std::string conf = dir.file("vddk.conf");
  vixtest::write_file(conf, std::string("vixDiskLib.linuxSSL.verifyCertificates = \"0\"\n"
                                        "some.unknown.Key = 1\n"
                                        "vixfs.asyncWorkers = 2\n"));
  ASSERT_TRUE(vix::Library::init({log_cb, warn_cb, warn_cb}, "", conf).ok());
  EXPECT_TRUE(any_contains(g_warns, "verifyCertificates"));
  EXPECT_TRUE(any_contains(g_warns, "some.unknown.Key"));
  EXPECT_FALSE(any_contains(g_warns, "vixfs.asyncWorkers"));
  EXPECT_EQ(vix::Library::get()->worker_count(), 2u);
  EXPECT_TRUE(any_contains(g_logs, "initialized"));
}

TEST_F(VixLibraryTest, LogLevelFiltersMessages) {
  vixtest::TempDir dir;
  std::string conf = dir.file("quiet.conf");
  vixtest::write_file(conf, std::string("vixDiskLib.transport.LogLevel = 1\n"));
  ASSERT_TRUE(vix::Library::init({log_cb, warn_cb, warn_cb}, "", conf).ok());
  vix::Library* lib = vix::Library::get();
  EXPECT_EQ(lib->log_level(), 1);
  vix::log::info("info-line");
  vix::log::warn("warn-line");
  vix::log::error("error-line");
  EXPECT_FALSE(any_contains(g_logs, "info-line"));
  EXPECT_FALSE(any_contains(g_warns, "warn-line"));
  EXPECT_TRUE(any_contains(g_warns, "error-line"));
}

TEST_F(VixLibraryTest, CallbacksAreSerialisedAcrossThreads) {
  ASSERT_TRUE(vix::Library::init({log_cb, warn_cb, warn_cb}, "", "").ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 100; ++i)
        vix::log::warn("t" + std::to_string(t) + "-" + std::to_string(i));
    });
  }
  for (auto& th : threads) th.join();
  std::lock_guard lock(g_mu);
  EXPECT_EQ(g_warns.size(), 400u);
}

TEST_F(VixLibraryTest, NoWorkersBeforeInitAndJobsDrainAtExit) {
  ASSERT_TRUE(vix::Library::init({}, "", "").ok());
  vix::Library* lib = vix::Library::get();
  std::atomic<int> ran{0};
  std::promise<std::thread::id> where;
  ASSERT_TRUE(lib->submit([&] { where.set_value(std::this_thread::get_id()); }));
  EXPECT_NE(where.get_future().get(), std::this_thread::get_id());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(lib->submit([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ran.fetch_add(1);
    }));
  }
  vix::Library::exit();  // drains before joining
  EXPECT_EQ(ran.load(), 50);
}

TEST_F(VixLibraryTest, TransportModesListFileFirst) {
  std::string modes = vix::supported_transport_modes();
  EXPECT_EQ(modes.rfind("file", 0), 0u) << modes;
  auto parsed = vix::parse_transport_modes("nbd:FILE:file");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, (std::vector<std::string>{"nbd", "file"}));
  auto bad = vix::parse_transport_modes("file:warp");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, static_cast<VixError>(VIX_E_INVALID_ARG));
  EXPECT_NE(bad.error().message.find("warp"), std::string::npos);
  EXPECT_FALSE(vix::parse_transport_modes("file::nbd").ok());
  auto dflt = vix::parse_transport_modes("");
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(*dflt, vix::known_transport_modes());
}

TEST(VixErrorsTest, EveryCodeHasTextAndDetailsAreAppended) {
  const VixError codes[] = {VIX_E_FAIL,
                            VIX_E_INVALID_ARG,
                            VIX_E_DISK_OUTOFRANGE,
                            VIX_E_DISK_KEY_NOTFOUND,
                            VIX_ASYNC,
                            VIX_E_ASYNC_MIXEDMODE_UNSUPPORTED,
                            VIX_E_HOST_TCP_CONN_LOST,
                            VIX_E_DISK_ATTACH_ROOTLINK};
  for (VixError c : codes) {
    std::string t(vix::base_error_text(c));
    EXPECT_FALSE(t.empty());
    if (c != VIX_E_FAIL) {
      EXPECT_NE(t, "Unknown error.") << c;
    }
  }
  vix::clear_error_details();
  EXPECT_EQ(vix::error_text(VIX_E_DISK_INVAL), vix::base_error_text(VIX_E_DISK_INVAL));
  vix::note_error_detail(vix::fail(VIX_E_DISK_INVAL, "disk.vmdk: grain table 3 points past EOF"));
  std::string t = vix::error_text(VIX_E_DISK_INVAL);
  EXPECT_NE(t.find("(disk.vmdk: grain table 3 points past EOF)"), std::string::npos) << t;
  // Upper bits are ignored, as VIX_ERROR_CODE does.
  EXPECT_NE(vix::error_text((uint64_t{7} << 32) | VIX_E_DISK_INVAL).find("grain table"),
            std::string::npos);
  // Another thread does not see this thread's detail.
  std::string other;
  std::thread([&] { other = vix::error_text(VIX_E_DISK_INVAL); }).join();
  EXPECT_EQ(other.find("grain table"), std::string::npos);
  // Details are bounded.
  vix::note_error_detail(vix::fail(VIX_E_FILE_ERROR, std::string(100000, 'x')));
  EXPECT_LT(vix::error_text(VIX_E_FILE_ERROR).size(), 1000u);
  EXPECT_NE(vix::error_text(12345).find("12345"), std::string::npos);
  vix::clear_error_details();
}

}  // namespace
