// The vSphere client's session and TLS handling against a real vcsim started with -user u:p.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "support/process.h"
#include "support/vsphere_sim.h"
#include "vsphere/client.h"

using vix::vsphere::Client;
using vix::vsphere::ConnectOptions;
using vixtest::Simulator;

namespace {

class VsphereSession : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sim_ = Simulator::start("-user u:p", false, &error_).release(); }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(sim_, nullptr) << error_; }

  static ConnectOptions options() {
    ConnectOptions o;
    o.url = sim_->get("VCSIM_URL");
    o.thumbprint = sim_->get("VCSIM_SHA1");
    o.connect_timeout_ms = 5000;
    o.timeout_ms = 20000;
    return o;
  }
  static std::unique_ptr<Client> client(const ConnectOptions& o = options()) {
    auto c = Client::connect(o);
    EXPECT_TRUE(c.ok()) << c.error().message;
    return c.ok() ? std::move(c).value() : nullptr;
  }

  static Simulator* sim_;
  static std::string error_;
};
Simulator* VsphereSession::sim_ = nullptr;
std::string VsphereSession::error_;

TEST_F(VsphereSession, LoginSucceedsAndCookieIsTheSessionKey) {
  auto c = client();
  ASSERT_TRUE(c);
  auto sc = c->service_content();
  ASSERT_TRUE(sc.ok()) << sc.error().message;
  EXPECT_EQ(sc->api_type, "VirtualCenter");
  auto r = c->login("u", "p");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(c->session_cookie().empty());
  auto key = c->current_session_key();
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ(*key, c->session_cookie());
  EXPECT_TRUE(c->logout().ok());
}

TEST_F(VsphereSession, WrongPasswordIsAnAuthenticationFailure) {
  auto c = client();
  ASSERT_TRUE(c);
  auto r = c->login("u", "wrong");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_AUTHENTICATION_FAIL);
  EXPECT_NE(r.error().message.find("InvalidLogin"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Login failure"), std::string::npos) << r.error().message;
  EXPECT_TRUE(c->session_cookie().empty());
}

TEST_F(VsphereSession, Sha256ThumbprintInLowerCaseIsAccepted) {
  ConnectOptions o = options();
  o.thumbprint = sim_->get("VCSIM_SHA256");
  std::transform(o.thumbprint.begin(), o.thumbprint.end(), o.thumbprint.begin(), ::tolower);
  auto c = client(o);
  ASSERT_TRUE(c);
  auto r = c->login("u", "p");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(c->logout().ok());
}

TEST_F(VsphereSession, WrongThumbprintShowsThePresentedOne) {
  ConnectOptions o = options();
  o.thumbprint = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33";
  auto c = client(o);
  ASSERT_TRUE(c);
  auto r = c->service_content();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_CANNOT_CONNECT_TO_HOST);
  EXPECT_NE(r.error().message.find(sim_->get("VCSIM_SHA1")), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(sim_->get("VCSIM_SHA256")), std::string::npos);
}

TEST_F(VsphereSession, CaBundleTrustsTheServerAndNoTrustFails) {
  ConnectOptions o = options();
  o.thumbprint.clear();
  o.ca_file = sim_->get("VCSIM_CERT");
  auto c = client(o);
  ASSERT_TRUE(c);
  auto r = c->login("u", "p");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(c->logout().ok());

  // No thumbprint and no CA bundle: the system store does not know this self-signed cert.
  o.ca_file.clear();
  auto untrusted = client(o);
  ASSERT_TRUE(untrusted);
  auto r2 = untrusted->service_content();
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, VIX_E_CANNOT_CONNECT_TO_HOST) << r2.error().message;
}

TEST_F(VsphereSession, LogoutLeavesNoSession) {
  auto admin = client();
  ASSERT_TRUE(admin);
  ASSERT_TRUE(admin->login("u", "p").ok());
  auto c = client();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->login("u", "p").ok());
  std::string key = c->session_cookie();
  auto before = admin->session_keys();
  ASSERT_TRUE(before.ok()) << before.error().message;
  EXPECT_NE(std::find(before->begin(), before->end(), key), before->end());

  ASSERT_TRUE(c->logout().ok());
  EXPECT_TRUE(c->session_cookie().empty());
  auto after = admin->session_keys();
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(std::find(after->begin(), after->end(), key), after->end());

  // No silent re-login after an explicit logout.
  auto inv = c->inventory();
  ASSERT_FALSE(inv.ok());
  EXPECT_EQ(inv.error().code, VIX_E_HOST_NOT_CONNECTED) << inv.error().message;
  // The old cookie is dead.
  auto reuse = client();
  ASSERT_TRUE(reuse);
  auto r = reuse->login_with_session(key);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_AUTHENTICATION_FAIL);
  EXPECT_NE(r.error().message.find("NotAuthenticated"), std::string::npos) << r.error().message;
  EXPECT_TRUE(admin->logout().ok());
}

TEST_F(VsphereSession, SessionCookieReuseAndReloginOnNotAuthenticated) {
  auto a = client();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->login("u", "p").ok());
  std::string first = a->session_cookie();

  auto b = client();
  ASSERT_TRUE(b);
  auto r = b->login_with_session(first);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto inv = b->inventory();
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->vms.size(), 4u);

  // b ends a's session under it: a's next call gets NotAuthenticated and logs in once more.
  ASSERT_TRUE(b->logout().ok());
  auto again = a->inventory();
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_NE(a->session_cookie(), first);
  EXPECT_FALSE(a->session_cookie().empty());
  EXPECT_TRUE(a->logout().ok());
}

TEST_F(VsphereSession, StoppedSimulatorFailsFastWithConnectionRefused) {
  std::string err;
  auto own = Simulator::start("", false, &err);
  ASSERT_TRUE(own) << err;
  ConnectOptions o;
  o.url = own->get("VCSIM_URL");
  o.thumbprint = own->get("VCSIM_SHA1");
  o.connect_timeout_ms = 2000;
  o.timeout_ms = 5000;
  auto c = Client::connect(o);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->login("any", "thing").ok());
  own->stop();
  auto t0 = std::chrono::steady_clock::now();
  auto inv = (*c)->inventory();
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(inv.ok());
  EXPECT_TRUE(inv.error().code == VIX_E_HOST_NETWORK_CONN_REFUSED ||
              inv.error().code == VIX_E_HOST_TCP_CONN_LOST)
      << inv.error().code << " " << inv.error().message;
  EXPECT_LT(elapsed, std::chrono::seconds(6));
}

TEST_F(VsphereSession, SilentServerTimesOut) {
  // A socket that listens but never answers: the TLS handshake must not hang past the timeout.
  vixtest::SilentListener silent;
  ASSERT_TRUE(silent.ok());
  ConnectOptions o;
  o.url = "https://127.0.0.1:" + std::to_string(silent.port()) + "/sdk";
  o.thumbprint = sim_->get("VCSIM_SHA1");
  o.connect_timeout_ms = 500;
  o.timeout_ms = 800;
  auto c = Client::connect(o);
  ASSERT_TRUE(c.ok());
  auto t0 = std::chrono::steady_clock::now();
  auto r = (*c)->service_content();
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_HOST_TCP_CONN_LOST) << r.error().message;
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST_F(VsphereSession, ResponseOverTheLimitIsRefused) {
  ConnectOptions o = options();
  o.max_response_bytes = 16384;  // enough for login, not for the inventory
  auto c = client(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->login("u", "p").ok());
  auto inv = c->inventory();
  ASSERT_FALSE(inv.ok());
  EXPECT_EQ(inv.error().code, VIX_E_FILE_TOO_BIG) << inv.error().message;
}

TEST_F(VsphereSession, PowerOffTaskAndItsFault) {
  // In this suite because it changes the model: the inventory suite may share a simulator.
  auto c = client();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->login("u", "p").ok());
  std::string vm = sim_->get("VCSIM_VM_DC0_C0_RP0_VM1");
  ASSERT_TRUE(c->power_off(vm).ok());
  auto inv = c->inventory();
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->find_vm(vm)->power_state, "poweredOff");
  // Powering off twice is an InvalidPowerState task error.
  auto again = c->power_off(vm);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("InvalidPowerState"), std::string::npos)
      << again.error().message;
  EXPECT_TRUE(c->logout().ok());
}

}  // namespace

namespace {

// What the https transport asks after a 401: a refused cookie gets a new login once; a cookie
// that is no longer current is simply replaced by the current one; a borrowed session cannot be
// renewed.
TEST_F(VsphereSession, RenewSessionLogsInAgainOnlyForTheRefusedCookie) {
  auto a = client();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->login("u", "p").ok());
  const std::string first = a->session_cookie();
  auto renewed = a->renew_session(first);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  EXPECT_NE(*renewed, first);
  EXPECT_EQ(*renewed, a->session_cookie());
  auto same = a->renew_session(first);  // an older cookie: no second login
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, *renewed);
  EXPECT_TRUE(a->inventory().ok());

  auto b = client();
  ASSERT_TRUE(b);
  ASSERT_TRUE(b->login_with_session(*renewed).ok());
  auto borrowed = b->renew_session(*renewed);
  ASSERT_FALSE(borrowed.ok());
  EXPECT_EQ(borrowed.error().code, VIX_E_HOST_NOT_CONNECTED) << borrowed.error().message;
  EXPECT_TRUE(a->logout().ok());
}

}  // namespace
