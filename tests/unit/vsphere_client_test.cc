// The vSphere client over canned HTTP replies: paging, faults, re-login, escaping, hostile XML.
#include <gtest/gtest.h>

#include <deque>

#include "vsphere/client.h"
#include "vsphere/parse.h"
#include "vsphere/xml.h"

namespace vs = vix::vsphere;

namespace {

struct Canned {
  long status;
  std::string body;
  std::string set_cookie;  // becomes the cookie when non-empty
};

class FakeTransport : public vs::Transport {
 public:
  std::deque<Canned> replies;
  std::vector<std::string> requests;
  std::string cookie_;

  vix::Result<vs::HttpReply> post(std::string_view, const std::string& body) override {
    requests.push_back(body);
    if (replies.empty()) return vix::fail(VIX_E_HOST_TCP_CONN_LOST, "no canned reply left");
    Canned c = replies.front();
    replies.pop_front();
    if (!c.set_cookie.empty()) cookie_ = c.set_cookie;
    return vs::HttpReply{c.status, c.body};
  }
  std::string cookie() const override { return cookie_; }
  void set_cookie(std::string v) override { cookie_ = std::move(v); }
  std::string endpoint() const override { return "https://vc.example.com/sdk"; }
};

std::string env(const std::string& inner) {
  return "<?xml version=\"1.0\"?><soapenv:Envelope "
         "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>" +
         inner + "</soapenv:Body></soapenv:Envelope>";
}

std::string fault(const std::string& type, const std::string& text) {
  return env("<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>" + text +
             "</faultstring><detail><" + type + "Fault xmlns=\"urn:vim25\" xsi:type=\"" + type +
             "\"/></detail></soapenv:Fault>");
}

const std::string kServiceContent =
    env("<RetrieveServiceContentResponse xmlns=\"urn:vim25\"><returnval>"
        "<rootFolder type=\"Folder\">group-d1</rootFolder>"
        "<propertyCollector type=\"PropertyCollector\">propertyCollector</propertyCollector>"
        "<viewManager type=\"ViewManager\">ViewManager</viewManager>"
        "<about><apiVersion>7.0.3.0</apiVersion><apiType>VirtualCenter</apiType></about>"
        "<sessionManager type=\"SessionManager\">SessionManager</sessionManager>"
        "</returnval></RetrieveServiceContentResponse>");

const std::string kLoginOk =
    env("<LoginResponse xmlns=\"urn:vim25\"><returnval><key>k</key></returnval></LoginResponse>");

std::string vm_object(const std::string& moref, const std::string& name) {
  return "<objects><obj type=\"VirtualMachine\">" + moref +
         "</obj><propSet><name>name</name><val xmlns:XMLSchema-instance=\"http://www.w3.org/2001/"
         "XMLSchema-instance\" XMLSchema-instance:type=\"xsd:string\">" +
         name + "</val></propSet></objects>";
}

struct Fixture {
  FakeTransport* t;
  std::unique_ptr<vs::Client> c;
};

Fixture make() {
  auto t = std::make_unique<FakeTransport>();
  Fixture f{t.get(), nullptr};
  f.c = std::make_unique<vs::Client>(std::move(t));
  f.t->replies.push_back({200, kServiceContent, ""});
  return f;
}

const std::string kVmSpec =
    "<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet>"
    "<objectSet><obj type=\"Folder\">group-d1</obj></objectSet></specSet>";

TEST(VsphereClient, PagingFollowsTokensUntilTheLastPage) {
  auto f = make();
  f.t->replies.push_back({200,
                          env("<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>"
                              "<token>tok&amp;1</token>" +
                              vm_object("vm-1", "a") + vm_object("vm-2", "b") +
                              "</returnval></RetrievePropertiesExResponse>"),
                          ""});
  f.t->replies.push_back(
      {200,
       env("<ContinueRetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>" +
           vm_object("vm-3", "c") +
           "<token>tok2</token></returnval></ContinueRetrievePropertiesExResponse>"),
       ""});
  f.t->replies.push_back(
      {200,
       env("<ContinueRetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>" +
           vm_object("vm-4", "d") + "</returnval></ContinueRetrievePropertiesExResponse>"),
       ""});
  std::vector<std::string> seen;
  auto r = f.c->retrieve(kVmSpec, [&](const vs::ObjectContent& oc) -> vix::Result<void> {
    seen.push_back(oc.obj.value + "=" + oc.find("name").child_value());
    return vix::ok();
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(seen, (std::vector<std::string>{"vm-1=a", "vm-2=b", "vm-3=c", "vm-4=d"}));
  ASSERT_EQ(f.t->requests.size(), 4u);
  EXPECT_NE(f.t->requests[2].find("<ContinueRetrievePropertiesEx xmlns=\"urn:vim25\">"),
            std::string::npos);
  EXPECT_NE(f.t->requests[2].find("<token>tok&amp;1</token>"), std::string::npos);
  EXPECT_NE(f.t->requests[3].find("<token>tok2</token>"), std::string::npos);
  EXPECT_TRUE(f.t->replies.empty());
}

TEST(VsphereClient, VisitorFailureCancelsThePendingRetrieval) {
  auto f = make();
  f.t->replies.push_back(
      {200,
       env("<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>"
           "<token>t1</token>" +
           vm_object("vm-1", "a") + "</returnval></RetrievePropertiesExResponse>"),
       ""});
  f.t->replies.push_back(
      {200, env("<CancelRetrievePropertiesExResponse xmlns=\"urn:vim25\"/>"), ""});
  auto r = f.c->retrieve(kVmSpec, [](const vs::ObjectContent&) -> vix::Result<void> {
    return vix::fail(VIX_E_CANCELLED, "stop");
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_CANCELLED);
  ASSERT_EQ(f.t->requests.size(), 3u);
  EXPECT_NE(f.t->requests[2].find("CancelRetrievePropertiesEx"), std::string::npos);
}

TEST(VsphereClient, FaultsMapToVixErrorsWithTypeAndText) {
  struct Case {
    std::string type;
    VixError code;
  } cases[] = {{"InvalidLogin", VIX_E_AUTHENTICATION_FAIL},
               {"ManagedObjectNotFound", VIX_E_OBJECT_NOT_FOUND},
               {"MethodNotFound", VIX_E_NOT_SUPPORTED},
               {"FileNotFound", VIX_E_FILE_NOT_FOUND},
               {"SomethingNew", VIX_E_FAIL}};
  for (const auto& c : cases) {
    auto f = make();
    f.t->replies.push_back({500, fault(c.type, "it went wrong"), ""});
    auto r = f.c->login("u", "p");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, c.code) << c.type;
    EXPECT_NE(r.error().message.find(c.type), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("it went wrong"), std::string::npos) << r.error().message;
  }
}

// NoPermission names the privilege it refused and the object: the error carries both.
TEST(VsphereClient, NoPermissionNamesThePrivilegeAndTheObject) {
  auto f = make();
  f.t->replies.push_back(
      {500,
       env("<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Permission to "
           "perform this operation was denied.</faultstring><detail><NoPermissionFault "
           "xmlns=\"urn:vim25\" xsi:type=\"NoPermission\"><object "
           "type=\"VirtualMachine\">vm-42</object><privilegeId>VirtualMachine.State."
           "CreateSnapshot</privilegeId></NoPermissionFault></detail></soapenv:Fault>"),
       ""});
  auto r = f.c->login("u", "p");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_AUTHENTICATION_FAIL);
  EXPECT_NE(r.error().message.find("Permission to perform this operation was denied. (privilege "
                                   "VirtualMachine.State.CreateSnapshot on vm-42)"),
            std::string::npos)
      << r.error().message;
}

TEST(VsphereClient, NotAuthenticatedLogsInOnceMoreAndRetries) {
  auto f = make();
  f.t->replies.push_back({200, kLoginOk, "first"});
  ASSERT_TRUE(f.c->login("u", "p").ok());
  f.t->replies.push_back({500, fault("NotAuthenticated", ""), ""});
  f.t->replies.push_back({200, kLoginOk, "second"});
  f.t->replies.push_back({200, env("<LogoutResponse xmlns=\"urn:vim25\"/>"), ""});
  // Logout itself is not retried; use a call that is.
  auto r = f.c->call("Logout", {"SessionManager", "SessionManager"}, "");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(f.c->session_cookie(), "second");
  int logins = 0;
  for (const auto& q : f.t->requests) logins += q.find("<Login ") != std::string::npos;
  EXPECT_EQ(logins, 2);

  // A second NotAuthenticated right after the re-login is returned, not retried forever.
  f.t->replies.push_back({500, fault("NotAuthenticated", ""), ""});
  f.t->replies.push_back({200, kLoginOk, "third"});
  f.t->replies.push_back({500, fault("NotAuthenticated", ""), ""});
  auto r2 = f.c->call("Logout", {"SessionManager", "SessionManager"}, "");
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, VIX_E_HOST_NOT_CONNECTED);
  EXPECT_TRUE(f.t->replies.empty());
}

TEST(VsphereClient, SoftNotAuthenticatedInMissingSetTriggersRelogin) {
  auto f = make();
  f.t->replies.push_back({200, kLoginOk, "first"});
  ASSERT_TRUE(f.c->login("u", "p").ok());
  f.t->replies.push_back(
      {200,
       env("<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval><objects>"
           "<obj type=\"VirtualMachine\">vm-1</obj><missingSet><path>name</path><fault>"
           "<fault xmlns:XMLSchema-instance=\"http://www.w3.org/2001/XMLSchema-instance\" "
           "XMLSchema-instance:type=\"NotAuthenticated\"/></fault></missingSet></objects>"
           "</returnval></RetrievePropertiesExResponse>"),
       ""});
  f.t->replies.push_back({200, kLoginOk, "second"});
  f.t->replies.push_back(
      {200,
       env("<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval>" +
           vm_object("vm-1", "a") + "</returnval></RetrievePropertiesExResponse>"),
       ""});
  int n = 0;
  auto r = f.c->retrieve(kVmSpec, [&](const vs::ObjectContent&) -> vix::Result<void> {
    ++n;
    return vix::ok();
  });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(n, 1);
  EXPECT_EQ(f.c->session_cookie(), "second");
}

TEST(VsphereClient, RequestsEscapeEveryString) {
  auto f = make();
  f.t->replies.push_back({200, kLoginOk, "c"});
  ASSERT_TRUE(f.c->login("a&b<c>\"d'", "p]]>&").ok());
  const std::string& q = f.t->requests.back();
  EXPECT_NE(q.find("<userName>a&amp;b&lt;c&gt;&quot;d&apos;</userName>"), std::string::npos) << q;
  EXPECT_NE(q.find("<password>p]]&gt;&amp;</password>"), std::string::npos) << q;
  auto bad = f.c->login(std::string("x\x01y"), "p");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, VIX_E_INVALID_ARG);
}

TEST(VsphereClient, ApiVersionGoesIntoTheSoapActionOnlyWhenSane) {
  auto f = make();
  auto sc = f.c->service_content();
  ASSERT_TRUE(sc.ok());
  EXPECT_EQ(sc->api_version, "7.0.3.0");

  auto t = std::make_unique<FakeTransport>();
  auto* raw = t.get();
  vs::Client c(std::move(t));
  std::string evil = kServiceContent;
  evil.replace(evil.find("7.0.3.0"), 7, "6.5\"\r\nX-Evil: 1");
  raw->replies.push_back({200, evil, ""});
  auto sc2 = c.service_content();
  ASSERT_TRUE(sc2.ok());
  EXPECT_EQ(sc2->api_version, "");
}

TEST(VsphereClient, HostileOrBrokenResponsesAreErrors) {
  struct Case {
    const char* what;
    long status;
    std::string body;
    VixError code;
  };
  std::string deep;
  for (int i = 0; i < 200000; ++i) deep += "<a>";
  std::vector<Case> cases = {
      {"malformed", 200, "<soapenv:Envelope><oops", VIX_E_INVALID_XML},
      {"not xml", 200, "hello, this is an HTML login page", VIX_E_INVALID_XML},
      {"empty", 200, "", VIX_E_INVALID_XML},
      {"deeply nested, unclosed", 200, deep, VIX_E_INVALID_XML},
      {"not an envelope", 200, "<html><body/></html>", VIX_E_INVALID_XML},
      {"wrong response element", 200, env("<SomethingElseResponse/>"), VIX_E_INVALID_XML},
      {"HTTP 500 without fault", 500, env("<LoginResponse/>"), VIX_E_INVALID_XML},
      {"HTTP 404", 404, "not found", VIX_E_CANNOT_CONNECT_TO_HOST},
      {"HTTP 503", 503, "", VIX_E_CANNOT_CONNECT_TO_HOST},
      {"fault without detail", 500,
       env("<soapenv:Fault><faultstring>boom</faultstring></soapenv:Fault>"), VIX_E_FAIL},
      {"entity bomb stays literal", 200,
       "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]>" +
           env("<LoginResponse>&b;</LoginResponse>"),
       VIX_E_AUTHENTICATION_FAIL},  // parses, but no cookie was set
  };
  for (const auto& c : cases) {
    auto f = make();
    f.t->replies.push_back({c.status, c.body, ""});
    auto r = f.c->login("u", "p");
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.error().code, c.code) << c.what << ": " << r.error().message;
  }
}

TEST(VsphereClient, RetrieveServiceContentWithoutTheEssentialsIsAnError) {
  auto t = std::make_unique<FakeTransport>();
  auto* raw = t.get();
  vs::Client c(std::move(t));
  raw->replies.push_back({200,
                          env("<RetrieveServiceContentResponse xmlns=\"urn:vim25\"><returnval>"
                              "</returnval></RetrieveServiceContentResponse>"),
                          ""});
  auto r = c.service_content();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_INVALID_XML);
}

TEST(VsphereClient, TaskPollingReportsTheTaskFault) {
  auto f = make();
  ASSERT_TRUE(f.c->service_content().ok());
  f.t->replies.push_back({200,
                          env("<CreateSnapshot_TaskResponse xmlns=\"urn:vim25\"><returnval "
                              "type=\"Task\">task-1</returnval></CreateSnapshot_TaskResponse>"),
                          ""});
  auto state = [](const std::string& s, const std::string& extra) {
    return env(
        "<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval><objects>"
        "<obj type=\"Task\">task-1</obj><propSet><name>info.state</name><val>" +
        s + "</val></propSet>" + extra + "</objects></returnval></RetrievePropertiesExResponse>");
  };
  f.t->replies.push_back({200, state("running", ""), ""});
  f.t->replies.push_back({200, state("queued", ""), ""});
  f.t->replies.push_back(
      {200,
       state("error",
             "<propSet><name>info.error</name><val xsi:type=\"LocalizedMethodFault\"><fault "
             "xsi:type=\"FileNotFound\"><file>x</file></fault><localizedMessage>no such "
             "file</localizedMessage></val></propSet>"),
       ""});
  auto r = f.c->create_snapshot("vm-1", "s", "", false, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_FILE_NOT_FOUND);
  EXPECT_NE(r.error().message.find("FileNotFound: no such file"), std::string::npos)
      << r.error().message;
  EXPECT_TRUE(f.t->replies.empty());
}

}  // namespace
