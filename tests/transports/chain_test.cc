// The mode table of src/transports/chain.cc: one line per mode gives its name, its factory and
// its place in the default order, and everything that names modes (ListTransportModes, the
// default chain, GetTransportMode, the chain's refusals) follows it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/library.h"

namespace {

TEST(TransportTable, ModesInVddksOrderEachMakingATransportOfItsName) {
  EXPECT_EQ(vix::known_transport_modes(),
            (std::vector<std::string>{"file", "san", "hotadd", "nbdssl", "nbd", "https"}));
  for (const std::string& mode : vix::known_transport_modes()) {
    SCOPED_TRACE(mode);
    auto t = vix::make_transport(mode);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->name(), mode);
    EXPECT_EQ(vix::transport_static_name(mode), mode);
  }
  EXPECT_EQ(vix::make_transport("warp"), nullptr);
  EXPECT_EQ(vix::make_transport(""), nullptr);
}

// GetTransportMode hands the name out as a const char* that outlives the disk handle.
TEST(TransportTable, StaticNamesAreTheTablesLiterals) {
  std::string name = "nbdssl";
  const char* s = vix::transport_static_name(name);
  name.assign("xxxxxx");
  EXPECT_STREQ(s, "nbdssl");
  EXPECT_EQ(s, vix::transport_static_name("nbdssl"));
  EXPECT_STREQ(vix::transport_static_name("warp"), "unknown");
  EXPECT_STREQ(vix::transport_static_name(""), "unknown");
  EXPECT_STREQ(vix::transport_static_name("NBD"), "unknown");  // names are lower case here
}

// A mode list that is not parsed first (open_through_chain's own callers) still gets a refusal
// that names the mode, not a crash.
class TransportChain : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(vix::Library::init({}, "", "").ok()); }
  void TearDown() override { vix::Library::exit(); }
};

TEST_F(TransportChain, NamesAModeItDoesNotHave) {
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, true, "", "file");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  const std::string snapshot;
  vix::TransportContext ctx{(*conn)->spec(), true, snapshot, (*conn)->config(), nullptr};
  auto dev = vix::open_through_chain({"warp"}, ctx, "/tmp/x.vmdk", 0);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.error().code, VIX_E_NOT_SUPPORTED);
  EXPECT_EQ(dev.error().message.rfind("warp: ", 0), 0u) << dev.error().message;
  auto none = vix::open_through_chain({}, ctx, "/tmp/x.vmdk", 0);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, VIX_E_INVALID_ARG);
}

}  // namespace
