// QueryChangedDiskAreas looped over a disk, over canned replies: windows of any size (empty
// ones included) up to the capacity, areas merged across windows, and every hostile reply refused
// with the field it got wrong and the reply quoted. Also the changeId of a parsed disk.
#include <gtest/gtest.h>

#include <deque>

#include "vsphere/changed_areas.h"
#include "vsphere/parse.h"
#include "vsphere/xml.h"

namespace vs = vix::vsphere;

namespace {

class FakeTransport : public vs::Transport {
 public:
  std::deque<std::pair<long, std::string>> replies;
  std::vector<std::string> requests;
  std::string cookie_ = "c";

  vix::Result<vs::HttpReply> post(std::string_view, const std::string& body) override {
    requests.push_back(body);
    if (replies.empty()) return vix::fail(VIX_E_HOST_TCP_CONN_LOST, "no canned reply left");
    auto [status, text] = replies.front();
    replies.pop_front();
    return vs::HttpReply{status, text};
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

// A DiskChangeInfo reply: startOffset, length, then "start:length" areas.
std::string window(const std::string& start, const std::string& length,
                   const std::vector<std::pair<std::string, std::string>>& areas = {}) {
  std::string x = "<QueryChangedDiskAreasResponse xmlns=\"urn:vim25\"><returnval><startOffset>" +
                  start + "</startOffset><length>" + length + "</length>";
  for (const auto& [s, l] : areas) {
    x += "<changedArea><start>" + s + "</start><length>" + l + "</length></changedArea>";
  }
  return env(x + "</returnval></QueryChangedDiskAreasResponse>");
}

struct Fixture {
  FakeTransport* t;
  std::unique_ptr<vs::Client> c;
};

Fixture make(const std::vector<std::string>& replies) {
  auto t = std::make_unique<FakeTransport>();
  Fixture f{t.get(), nullptr};
  f.c = std::make_unique<vs::Client>(std::move(t));
  for (const std::string& r : replies) f.t->replies.push_back({200, r});
  return f;
}

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kTiB = 1ull << 40;

// The startOffsets the loop asked for, in order.
std::vector<std::string> asked_offsets(const FakeTransport& t) {
  std::vector<std::string> out;
  for (const std::string& r : t.requests) {
    auto a = r.find("<startOffset>");
    if (a == std::string::npos) continue;
    auto b = r.find("</startOffset>", a);
    out.push_back(r.substr(a + 13, b - a - 13));
  }
  return out;
}

TEST(ChangedAreas, LoopsPastEmptyWindowsAndBeyondTwoTerabytesAndMergesAreas) {
  const uint64_t cap = 4 * kTiB;
  const std::string t1 = std::to_string(kTiB), t3 = std::to_string(3 * kTiB);
  auto f = make({
      window("0", std::to_string(kMiB), {{"0", "65536"}, {"131072", "65536"}}),
      window(std::to_string(kMiB), std::to_string(kTiB - kMiB)),  // empty window: go on
      window(t1, std::to_string(2 * kTiB)),                       // empty, up to 3 TiB
      window(t3, std::to_string(kTiB - 65536),
             {{t3, "65536"}, {std::to_string(cap - 131072), "65536"}}),
      // The last window ends exactly at the capacity; its area continues the one before.
      window(std::to_string(cap - 65536), "65536", {{std::to_string(cap - 65536), "65536"}}),
  });
  auto r = vs::query_changed_areas(*f.c, "vm-1", "snapshot-2", 2000, cap, "52 aa-bb/3");
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::vector<vs::ChangedArea> want{
      {0, 65536}, {131072, 65536}, {3 * kTiB, 65536}, {cap - 131072, 131072}};
  EXPECT_EQ(*r, want);
  EXPECT_EQ(asked_offsets(*f.t), (std::vector<std::string>{"0", std::to_string(kMiB), t1, t3,
                                                           std::to_string(cap - 65536)}));
  const std::string& first = f.t->requests[0];
  EXPECT_NE(first.find("<_this type=\"VirtualMachine\">vm-1</_this>"), std::string::npos);
  EXPECT_NE(first.find("<snapshot type=\"VirtualMachineSnapshot\">snapshot-2</snapshot>"),
            std::string::npos);
  EXPECT_NE(first.find("<deviceKey>2000</deviceKey>"), std::string::npos);
  EXPECT_NE(first.find("<changeId>52 aa-bb/3</changeId>"), std::string::npos);
  EXPECT_TRUE(f.t->replies.empty());
}

TEST(ChangedAreas, CurrentStateSendsNoSnapshot) {
  auto f = make({window("0", std::to_string(kMiB))});
  auto r = vs::query_changed_areas(*f.c, "vm-1", "", 2000, kMiB, "*");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(f.t->requests[0].find("<snapshot"), std::string::npos);
}

struct Hostile {
  const char* name;
  std::string reply;
  const char* says;  // what the error must name
};

TEST(ChangedAreas, HostileRepliesAreRefusedNamingTheField) {
  const std::string mib = std::to_string(kMiB);
  const std::vector<Hostile> cases{
      {"backwards", window("0", "65536"), ""},  // placeholder, replaced below
      {"zero length", window("0", "0"), "length 0"},
      {"wrong start", window("4096", mib), "startOffset 4096 is not the requested 0"},
      {"past capacity", window("0", std::to_string(2 * kMiB)), "runs past the disk's capacity"},
      {"area at window end", window("0", "65536", {{"65536", "512"}}), "changedArea[0]"},
      {"area past window", window("0", "65536", {{"0", "131072"}}), "outside the window"},
      {"overlap", window("0", mib, {{"0", "65536"}, {"4096", "512"}}), "changedArea[1] at 4096"},
      {"unsorted", window("0", mib, {{"131072", "512"}, {"0", "512"}}), "precedes"},
      {"zero area", window("0", mib, {{"0", "0"}}), "changedArea[0] has length 0"},
      {"negative", window("0", mib, {{"-512", "512"}}), "changedArea[0].start -512"},
      {"not a number", window("0", mib, {{"0", "lots"}}), "changedArea[0].length 'lots'"},
      {"no length",
       env("<QueryChangedDiskAreasResponse xmlns=\"urn:vim25\"><returnval>"
           "<startOffset>0</startOffset></returnval>"
           "</QueryChangedDiskAreasResponse>"),
       "no length"},
      {"no returnval", env("<QueryChangedDiskAreasResponse xmlns=\"urn:vim25\"/>"),
       "without a DiskChangeInfo"},
  };
  for (const Hostile& h : cases) {
    SCOPED_TRACE(h.name);
    std::vector<std::string> replies{h.reply};
    std::string says = h.says;
    if (std::string(h.name) == "backwards") {
      // A second window that starts before where the first ended.
      replies = {window("0", "65536"), window("0", mib)};
      says = "startOffset 0 is not the requested 65536";
    }
    auto f = make(replies);
    auto r = vs::query_changed_areas(*f.c, "vm-1", "snapshot-2", 2000, kMiB, "*");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, VIX_E_INVALID_XML);
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("QueryChangedDiskAreas vm-1 snapshot-2 disk 2000"),
              std::string::npos)
        << r.error().message;
    if (std::string(h.name) != "no returnval") {
      EXPECT_NE(r.error().message.find("(reply: <"), std::string::npos) << r.error().message;
    }
  }
}

TEST(ChangedAreas, ServerFaultsCarryTheServersWords) {
  auto f = make({});
  f.t->replies.push_back(
      {500, env("<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Error caused "
                "by file [ds] vm/disk.vmdk: change tracking is not enabled</faultstring><detail>"
                "<FileFaultFault xmlns=\"urn:vim25\" xsi:type=\"FileFault\"><file>[ds] "
                "vm/disk.vmdk</file></FileFaultFault></detail></soapenv:Fault>")});
  auto r = vs::query_changed_areas(*f.c, "vm-1", "snapshot-2", 2000, kMiB, "52 aa/1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_FILE_ERROR);
  EXPECT_NE(r.error().message.find("change tracking is not enabled"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("changeId 52 aa/1"), std::string::npos) << r.error().message;
}

TEST(ChangedAreas, RefusesWhatCannotBeAsked) {
  auto f = make({});
  EXPECT_EQ(vs::query_changed_areas(*f.c, "vm-1", "", 2000, 0, "*").error().code,
            VIX_E_INVALID_ARG);
  EXPECT_EQ(vs::query_changed_areas(*f.c, "vm-1", "", 2000, kMiB, "").error().code,
            VIX_E_INVALID_ARG);
  EXPECT_TRUE(f.t->requests.empty());
}

TEST(ChangedAreas, ParsedDiskCarriesItsChangeId) {
  pugi::xml_document doc;
  ASSERT_TRUE(doc.load_string(
      "<val xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
      "<VirtualDevice xsi:type=\"VirtualDisk\"><key>2000</key>"
      "<backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[ds] vm/d-000001.vmdk"
      "</fileName><changeId>52 90 37-b3 12/4</changeId><parent><fileName>[ds] vm/d.vmdk"
      "</fileName><changeId>52 90 37-b3 12/1</changeId></parent></backing></VirtualDevice>"
      "<VirtualDevice xsi:type=\"VirtualDisk\"><key>2001</key>"
      "<backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\"><fileName>[ds] vm/e.vmdk"
      "</fileName></backing></VirtualDevice></val>"));
  auto disks = vs::parse_disks(doc.first_child());
  ASSERT_TRUE(disks.ok()) << disks.error().message;
  ASSERT_EQ(disks->size(), 2u);
  EXPECT_EQ((*disks)[0].change_id, "52 90 37-b3 12/4");
  EXPECT_EQ((*disks)[1].change_id, "");
}

}  // namespace
