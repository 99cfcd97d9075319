// The privilege table: HasPrivilegeOnEntities answers parsed defensively, what each operation
// misses, the refusal text and the JSON for snapshot.json.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

#include "vsphere/client.h"
#include "vsphere/privileges.h"
#include "vsphere/xml.h"

namespace vs = vix::vsphere;

namespace {

const char* kXsi = "xmlns:XMLSchema-instance=\"http://www.w3.org/2001/XMLSchema-instance\"";

std::string answer(const std::string& entity_type, const std::string& entity,
                   const std::vector<std::pair<std::string, std::string>>& privs) {
  std::string out = "<returnval><entity type=\"" + entity_type + "\">" + entity + "</entity>";
  for (const auto& [id, granted] : privs) {
    out += "<privAvailability><privId>" + id + "</privId><isGranted>" + granted +
           "</isGranted></privAvailability>";
  }
  return out + "</returnval>";
}

vix::Result<vs::PrivilegeTable> parse(const std::string& inner,
                                      const std::vector<std::string>& asked = {"vm-1", "vm-2",
                                                                               "group-d1"}) {
  pugi::xml_document doc;
  std::string xml = std::string("<HasPrivilegeOnEntitiesResponse xmlns=\"urn:vim25\" ") + kXsi +
                    ">" + inner + "</HasPrivilegeOnEntitiesResponse>";
  auto r = vs::parse_document(doc, xml, "test");
  EXPECT_TRUE(r.ok()) << r.error().message;
  return vs::parse_privilege_answers(doc.document_element(), "group-d1", asked);
}

TEST(VspherePrivileges, AnswersGiveWhatEachOperationMisses) {
  auto t = parse(answer("VirtualMachine", "vm-1",
                        {{"VirtualMachine.Provisioning.DiskRandomRead", "true"},
                         {"VirtualMachine.State.CreateSnapshot", "false"},
                         {"VirtualMachine.State.RemoveSnapshot", "true"}}) +
                 answer("VirtualMachine", "vm-2",
                        {{"VirtualMachine.Provisioning.DiskRandomRead", "false"},
                         {"VirtualMachine.State.CreateSnapshot", "true"}}) +
                 answer("Folder", "group-d1",
                        {{"Global.DisableMethods", "false"}, {"Global.EnableMethods", "1"}}));
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE(t->known());
  EXPECT_TRUE(t->missing("read", "vm-1").empty());
  auto snap = t->missing("snapshot", "vm-1");
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].privilege, "VirtualMachine.State.CreateSnapshot");
  EXPECT_EQ(snap[0].entity, "vm-1");
  EXPECT_EQ(vs::privilege_refusal("snapshot", "vm-1", snap[0]),
            "snapshot on vm-1: missing privilege VirtualMachine.State.CreateSnapshot on vm-1");
  EXPECT_TRUE(t->missing("snapshot", "vm-2").empty());
  ASSERT_EQ(t->missing("read", "vm-2").size(), 1u);
  // Root-scoped privileges are looked up on the root folder whatever the VM.
  auto dm = t->missing("disable-methods", "vm-2");
  ASSERT_EQ(dm.size(), 1u);
  EXPECT_EQ(dm[0].entity, "group-d1");
  EXPECT_TRUE(t->missing("enable-methods", "vm-2").empty());
  auto err = t->check("disable-methods", "vm-2");
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.error().code, VIX_E_AUTHENTICATION_FAIL);
  EXPECT_EQ(err.error().message,
            "disable-methods on vm-2: missing privilege Global.DisableMethods on group-d1");
  // Not answered (a VM not checked, a privilege left out) refuses nothing.
  EXPECT_TRUE(t->missing("snapshot", "vm-9").empty());
  EXPECT_TRUE(t->missing("write", "vm-1").empty());
  EXPECT_TRUE(t->missing("no-such-operation", "vm-1").empty());
  EXPECT_EQ(t->json("vm-1"),
            "{\"checked\":true,\"missing\":[{\"operation\":\"snapshot\",\"privilege\":"
            "\"VirtualMachine.State.CreateSnapshot\",\"entity\":\"vm-1\"},{\"operation\":"
            "\"disable-methods\",\"privilege\":\"Global.DisableMethods\",\"entity\":"
            "\"group-d1\"}]}");
  vs::PrivilegeTable copy = *t;  // the mount keeps a copy per VM
  EXPECT_EQ(copy.missing("snapshot", "vm-1").size(), 1u);
}

TEST(VspherePrivileges, UnknownTableRefusesNothing) {
  auto t = vs::PrivilegeTable::unknown("MethodNotFound: HasPrivilegeOnEntities");
  EXPECT_FALSE(t.known());
  EXPECT_TRUE(t.missing("snapshot", "vm-1").empty());
  EXPECT_TRUE(t.check("snapshot", "vm-1").ok());
  EXPECT_EQ(t.json("vm-1"),
            "{\"checked\":false,\"reason\":\"MethodNotFound: HasPrivilegeOnEntities\"}");
}

TEST(VspherePrivileges, HostileAnswersAreErrorsNamingTheField) {
  struct Case {
    std::string inner, needle;
  };
  for (const Case& c : std::vector<Case>{
           {answer("VirtualMachine", "vm-1", {{"Global.Licenses", "maybe"}}), "isGranted"},
           {"<returnval><privAvailability><privId>X</privId><isGranted>true</isGranted>"
            "</privAvailability></returnval>",
            "returnval[0].entity is missing"},
           {answer("VirtualMachine", "vm-7", {{"Global.Licenses", "true"}}),
            "returnval[0].entity vm-7 was not asked for"},
           {answer("VirtualMachine", "vm-1", {{"", "true"}}), "privId is missing"},
           {"<returnval><entity type=\"VirtualMachine\">vm-1</entity><privAvailability><privId>X"
            "</privId></privAvailability></returnval>",
            "isGranted is missing for X"},
           {"<bogus/>", "unexpected element <bogus>"},
       }) {
    auto t = parse(c.inner);
    ASSERT_FALSE(t.ok()) << c.inner;
    EXPECT_EQ(t.error().code, VIX_E_INVALID_XML) << c.inner;
    EXPECT_NE(t.error().message.find(c.needle), std::string::npos) << t.error().message;
    EXPECT_NE(t.error().message.find("HasPrivilegeOnEntities"), std::string::npos)
        << t.error().message;
  }
}

TEST(VspherePrivileges, TableListsEveryOperationOnce) {
  auto ops = vs::privilege_operations();
  EXPECT_EQ(ops.front(), "read");
  EXPECT_EQ(std::count(ops.begin(), ops.end(), "hotadd"), 1);
  EXPECT_NE(std::find(ops.begin(), ops.end(), "disable-methods"), ops.end());
}

// One HasPrivilegeOnEntities call, over canned replies: how many requests, and what they carry.
class CannedTransport : public vs::Transport {
 public:
  std::deque<std::pair<long, std::string>> replies;
  std::vector<std::string> requests;
  vix::Result<vs::HttpReply> post(std::string_view, const std::string& body) override {
    requests.push_back(body);
    if (replies.empty()) return vix::fail(VIX_E_HOST_TCP_CONN_LOST, "no canned reply left");
    auto r = replies.front();
    replies.pop_front();
    return vs::HttpReply{r.first, r.second};
  }
  std::string cookie() const override { return "c"; }
  void set_cookie(std::string) override {}
  std::string endpoint() const override { return "https://vc.example.com/sdk"; }
};

std::string env(const std::string& inner) {
  return "<?xml version=\"1.0\"?><soapenv:Envelope "
         "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>" +
         inner + "</soapenv:Body></soapenv:Envelope>";
}

CannedTransport* canned(std::unique_ptr<vs::Client>* client) {
  auto t = std::make_unique<CannedTransport>();
  CannedTransport* raw = t.get();
  raw->replies.push_back(
      {200, env("<RetrieveServiceContentResponse xmlns=\"urn:vim25\"><returnval>"
                "<rootFolder type=\"Folder\">group-d1</rootFolder>"
                "<propertyCollector type=\"PropertyCollector\">pc</propertyCollector>"
                "<sessionManager type=\"SessionManager\">SessionManager</sessionManager>"
                "<authorizationManager type=\"AuthorizationManager\">AuthorizationManager"
                "</authorizationManager><about><apiType>VirtualCenter</apiType></about>"
                "</returnval></RetrieveServiceContentResponse>")});
  raw->replies.push_back(
      {200, env("<RetrievePropertiesExResponse xmlns=\"urn:vim25\"><returnval><objects>"
                "<obj type=\"SessionManager\">SessionManager</obj><propSet><name>currentSession"
                "</name><val xsi:type=\"UserSession\"><key>52-session-key</key></val></propSet>"
                "</objects></returnval></RetrievePropertiesExResponse>")});
  *client = std::make_unique<vs::Client>(std::move(t));
  return raw;
}

TEST(VspherePrivileges, OneCallCoversEveryVmAndTheRootFolder) {
  std::unique_ptr<vs::Client> client;
  CannedTransport* t = canned(&client);
  std::vector<std::string> vms;
  std::string answers;
  for (int i = 0; i < 200; ++i) {
    vms.push_back("vm-" + std::to_string(i));
    answers += answer("VirtualMachine", vms.back(),
                      {{"VirtualMachine.State.CreateSnapshot", i == 7 ? "false" : "true"}});
  }
  answers += answer("Folder", "group-d1", {{"Global.DisableMethods", "true"}});
  t->replies.push_back({200, env("<HasPrivilegeOnEntitiesResponse xmlns=\"urn:vim25\">" + answers +
                                 "</HasPrivilegeOnEntitiesResponse>")});
  auto table = vs::check_privileges(*client, vms);
  ASSERT_TRUE(table.ok()) << table.error().message;
  EXPECT_EQ(t->requests.size(), 3u);  // service content, the session key, the check
  const std::string& call = t->requests.back();
  EXPECT_NE(call.find("<HasPrivilegeOnEntities"), std::string::npos);
  EXPECT_NE(call.find("<entity type=\"VirtualMachine\">vm-199</entity>"), std::string::npos);
  EXPECT_NE(call.find("<entity type=\"Folder\">group-d1</entity>"), std::string::npos);
  EXPECT_NE(call.find("<sessionId>52-session-key</sessionId>"), std::string::npos);
  EXPECT_NE(call.find("<privId>Global.DisableMethods</privId>"), std::string::npos);
  EXPECT_EQ(table->missing("snapshot", "vm-7").size(), 1u);
  EXPECT_TRUE(table->missing("snapshot", "vm-8").empty());
}

TEST(VspherePrivileges, ServerWithoutTheCallGivesAnUnknownTable) {
  std::unique_ptr<vs::Client> client;
  CannedTransport* t = canned(&client);
  t->replies.push_back(
      {500, env("<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>no such "
                "method</faultstring><detail><MethodNotFoundFault xmlns=\"urn:vim25\" "
                "xsi:type=\"MethodNotFound\"/></detail></soapenv:Fault>")});
  auto table = vs::check_privileges(*client, {"vm-1"});
  ASSERT_TRUE(table.ok()) << table.error().message;
  EXPECT_FALSE(table->known());
  EXPECT_NE(table->unknown_reason().find("MethodNotFound"), std::string::npos)
      << table->unknown_reason();
  EXPECT_TRUE(table->check("snapshot", "vm-1").ok());
}

}  // namespace
