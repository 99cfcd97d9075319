// Property-value parsing, strict conversions, thumbprints and datastore paths of the vSphere
// client.
#include <gtest/gtest.h>

#include "common/tls_trust.h"
#include "vsphere/http.h"
#include "vsphere/inventory.h"
#include "vsphere/parse.h"
#include "vsphere/xml.h"

namespace vs = vix::vsphere;

namespace {

pugi::xml_node load(pugi::xml_document& doc, const std::string& xml) {
  EXPECT_TRUE(vs::parse_document(doc, xml, "test").ok());
  return doc.document_element();
}

const char* kXsi = "xmlns:XMLSchema-instance=\"http://www.w3.org/2001/XMLSchema-instance\"";

std::string disk(const std::string& key, const std::string& ctrl, const std::string& unit,
                 const std::string& extra) {
  return "<VirtualDevice XMLSchema-instance:type=\"VirtualDisk\"><key>" + key +
         "</key><deviceInfo><label>Hard disk 1</label></deviceInfo>"
         "<backing XMLSchema-instance:type=\"VirtualDiskFlatVer2BackingInfo\">"
         "<fileName>[ds1] vm/vm-000002.vmdk</fileName><datastore type=\"Datastore\">datastore-1"
         "</datastore><diskMode>persistent</diskMode><uuid>U2</uuid>"
         "<parent><fileName>[ds1] vm/vm-000001.vmdk</fileName><uuid>U1</uuid>"
         "<parent><fileName>[ds1] vm/vm.vmdk</fileName><uuid>U0</uuid></parent></parent>"
         "</backing><controllerKey>" +
         ctrl + "</controllerKey><unitNumber>" + unit + "</unitNumber>" + extra +
         "</VirtualDevice>";
}

TEST(VsphereParse, DisksWithControllersAndBackingChains) {
  std::string xml = std::string("<val ") + kXsi +
                    " XMLSchema-instance:type=\"ArrayOfVirtualDevice\">"
                    "<VirtualDevice XMLSchema-instance:type=\"VirtualIDEController\"><key>200</key>"
                    "<busNumber>1</busNumber></VirtualDevice>"
                    "<VirtualDevice XMLSchema-instance:type=\"VirtualLsiLogicSASController\">"
                    "<key>1000</key><busNumber>2</busNumber></VirtualDevice>"
                    "<VirtualDevice XMLSchema-instance:type=\"VirtualNVMEController\"><key>31000"
                    "</key><busNumber>0</busNumber></VirtualDevice>"
                    "<VirtualDevice XMLSchema-instance:type=\"VirtualCdrom\"><key>3002</key>"
                    "</VirtualDevice>" +
                    disk("2000", "1000", "3",
                         "<capacityInKB>1024</capacityInKB>"
                         "<capacityInBytes>1048577</capacityInBytes>") +
                    disk("2001", "200", "1", "<capacityInKB>2048</capacityInKB>") +
                    disk("2002", "31000", "0", "") + disk("2003", "777", "0", "") + "</val>";
  pugi::xml_document doc;
  auto disks = vs::parse_disks(load(doc, xml));
  ASSERT_TRUE(disks.ok()) << disks.error().message;
  ASSERT_EQ(disks->size(), 4u);
  const auto& d = (*disks)[0];
  EXPECT_EQ(d.key, 2000);
  EXPECT_EQ(d.label, "Hard disk 1");
  EXPECT_EQ(d.slot_name(), "scsi2-3");
  EXPECT_EQ(d.capacity_bytes, 1048577u);  // capacityInBytes wins
  ASSERT_EQ(d.chain.size(), 3u);
  EXPECT_EQ(d.file_name(), "[ds1] vm/vm-000002.vmdk");
  EXPECT_EQ(d.chain[0].type, "VirtualDiskFlatVer2BackingInfo");
  EXPECT_EQ(d.chain[0].datastore, "datastore-1");
  EXPECT_EQ(d.chain[0].disk_mode, "persistent");
  EXPECT_EQ(d.chain[1].uuid, "U1");
  EXPECT_EQ(d.chain[2].file_name, "[ds1] vm/vm.vmdk");
  EXPECT_EQ((*disks)[1].slot_name(), "ide1-1");
  EXPECT_EQ((*disks)[1].capacity_bytes, 2048u * 1024u);
  EXPECT_EQ((*disks)[2].slot_name(), "nvme0-0");
  EXPECT_EQ((*disks)[3].slot_name(), "disk2003");  // controller unknown
}

TEST(VsphereParse, WrongTypesAreErrorsNamingTheField) {
  for (const std::string& extra :
       {std::string("<capacityInKB>12abc</capacityInKB>"),
        std::string("<capacityInKB>-1</capacityInKB>"),
        std::string("<capacityInBytes>99999999999999999999999</capacityInBytes>"),
        std::string("<capacityInKB>9223372036854775807</capacityInKB>")}) {
    std::string xml =
        std::string("<val ") + kXsi + ">" + disk("2000", "1000", "0", extra) + "</val>";
    pugi::xml_document doc;
    auto disks = vs::parse_disks(load(doc, xml));
    ASSERT_FALSE(disks.ok()) << extra;
    EXPECT_EQ(disks.error().code, VIX_E_INVALID_XML);
    EXPECT_NE(disks.error().message.find("capacityIn"), std::string::npos) << disks.error().message;
  }
  std::string xml = std::string("<val ") + kXsi + ">" + disk("two", "1000", "0", "") + "</val>";
  pugi::xml_document doc;
  EXPECT_FALSE(vs::parse_disks(load(doc, xml)).ok());
}

TEST(VsphereParse, SnapshotTree) {
  std::string xml =
      "<val><currentSnapshot type=\"VirtualMachineSnapshot\">snapshot-71</currentSnapshot>"
      "<rootSnapshotList><snapshot type=\"VirtualMachineSnapshot\">snapshot-69</snapshot>"
      "<name>backup-1</name><description>d</description><id>1</id>"
      "<createTime>2026-11-25T09:48:04.287848907Z</createTime><quiesced>true</quiesced>"
      "<childSnapshotList><snapshot>snapshot-71</snapshot><name>backup-2</name>"
      "<createTime>2026-11-25T10:48:04+01:00</createTime></childSnapshotList>"
      "<childSnapshotList><snapshot>snapshot-72</snapshot><name>b3</name></childSnapshotList>"
      "</rootSnapshotList><rootSnapshotList><snapshot>snapshot-80</snapshot></rootSnapshotList>"
      "</val>";
  pugi::xml_document doc;
  std::string current;
  auto roots = vs::parse_snapshot_info(load(doc, xml), &current);
  ASSERT_TRUE(roots.ok()) << roots.error().message;
  EXPECT_EQ(current, "snapshot-71");
  ASSERT_EQ(roots->size(), 2u);
  const auto& r = (*roots)[0];
  EXPECT_EQ(r.name, "backup-1");
  EXPECT_TRUE(r.quiesced);
  EXPECT_EQ(r.id, 1);
  EXPECT_EQ(r.create_time_ns, 1795600084287848907LL);
  ASSERT_EQ(r.children.size(), 2u);
  EXPECT_EQ(r.children[0].create_time_ns, 1795600084000000000LL);  // +01:00 = same instant
  auto all = vs::flatten(*roots);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[2]->moref, "snapshot-72");
  EXPECT_EQ(vs::find_snapshot(*roots, "snapshot-80")->moref, "snapshot-80");
  EXPECT_EQ(vs::find_snapshot(*roots, "nope"), nullptr);
}

TEST(VsphereParse, HostileSnapshotTreesAndChainsAreBounded) {
  std::string deep = "<val>";
  const int levels = 5000;
  deep += "<rootSnapshotList><snapshot>s</snapshot>";
  for (int i = 0; i < levels; ++i) deep += "<childSnapshotList><snapshot>s</snapshot>";
  for (int i = 0; i < levels; ++i) deep += "</childSnapshotList>";
  deep += "</rootSnapshotList></val>";
  pugi::xml_document doc;
  auto r = vs::parse_snapshot_info(load(doc, deep), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_INVALID_XML);

  std::string chain = "<val><VirtualDevice xsi:type=\"VirtualDisk\"><key>1</key><backing>";
  for (int i = 0; i < levels; ++i) chain += "<parent>";
  for (int i = 0; i < levels; ++i) chain += "</parent>";
  chain += "</backing></VirtualDevice></val>";
  pugi::xml_document doc2;
  auto d = vs::parse_disks(load(doc2, chain));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("backing chain"), std::string::npos);

  std::string bad_time =
      "<val><rootSnapshotList><snapshot>s</snapshot><createTime>yesterday</createTime>"
      "</rootSnapshotList></val>";
  pugi::xml_document doc3;
  EXPECT_FALSE(vs::parse_snapshot_info(load(doc3, bad_time), nullptr).ok());
  std::string no_moref = "<val><rootSnapshotList><name>x</name></rootSnapshotList></val>";
  pugi::xml_document doc4;
  EXPECT_FALSE(vs::parse_snapshot_info(load(doc4, no_moref), nullptr).ok());
}

TEST(VsphereParse, StrictNumbersAndTimes) {
  EXPECT_EQ(*vs::parse_int(" 42 ", "f"), 42);
  EXPECT_EQ(*vs::parse_int("-7", "f"), -7);
  EXPECT_FALSE(vs::parse_int("", "f").ok());
  EXPECT_FALSE(vs::parse_int("4 2", "f").ok());
  EXPECT_FALSE(vs::parse_int("0x10", "f").ok());
  EXPECT_TRUE(*vs::parse_bool("true", "f"));
  EXPECT_FALSE(vs::parse_bool("yes", "f").ok());
  EXPECT_EQ(*vs::parse_datetime_ns("1970-01-01T00:00:01Z", "t"), 1000000000);
  EXPECT_EQ(*vs::parse_datetime_ns("1970-01-01T00:00:00.5", "t"), 500000000);
  EXPECT_EQ(*vs::parse_datetime_ns("2000-03-01T00:00:00-01:00", "t"),
            951868800LL * 1000000000 + 3600LL * 1000000000);
  EXPECT_FALSE(vs::parse_datetime_ns("2000-13-01T00:00:00Z", "t").ok());
  EXPECT_FALSE(vs::parse_datetime_ns("2000-01-01T00:00:00Zjunk", "t").ok());
  EXPECT_FALSE(vs::parse_datetime_ns("2000-01-01T00:00:00.Z", "t").ok());
}

TEST(VsphereParse, XmlHelpers) {
  EXPECT_EQ(vs::xml_escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;");
  EXPECT_TRUE(vs::xml_safe("tab\tnl\n"));
  EXPECT_FALSE(vs::xml_safe(std::string("nul\0x", 5)));
  pugi::xml_document doc;
  auto n = load(doc,
                "<a:b xmlns:a=\"u\" XMLSchema-instance:type=\"xsd:string\" "
                "type=\"HostSystem\"><c:d>t</c:d></a:b>");
  EXPECT_EQ(vs::local_name(n), "b");
  EXPECT_EQ(vs::child_text(n, "d"), "t");
  EXPECT_EQ(vs::xsi_type(n), "string");
}

TEST(VsphereParse, Thumbprints) {
  EXPECT_EQ(
      *vix::normalize_thumbprint("2c:11:ed:d7:13:87:7d:b5:74:18:b8:1c:42:c2:56:1f:0d:b9:5b:b9"),
      "2C11EDD713877DB57418B81C42C2561F0DB95BB9");
  EXPECT_EQ(vix::normalize_thumbprint(std::string(64, 'a'))->size(), 64u);
  EXPECT_FALSE(vix::normalize_thumbprint("2C:11").ok());
  EXPECT_FALSE(vix::normalize_thumbprint(std::string(40, 'g')).ok());
  unsigned char d[3] = {0x0a, 0xff, 0x10};
  EXPECT_EQ(vix::format_thumbprint(d, 3), "0A:FF:10");
}

TEST(VsphereParse, DatastorePathsAndUrls) {
  auto p = vs::parse_datastore_path("[LocalDS_0] DC0_H0_VM0/disk1.vmdk");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->datastore, "LocalDS_0");
  EXPECT_EQ(p->path, "DC0_H0_VM0/disk1.vmdk");
  auto q = vs::parse_datastore_path("[my ds]vm/x.vmdk");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->datastore, "my ds");
  EXPECT_EQ(q->path, "vm/x.vmdk");
  EXPECT_FALSE(vs::parse_datastore_path("/local/x.vmdk"));
  EXPECT_FALSE(vs::parse_datastore_path("[] x"));
  EXPECT_FALSE(vs::parse_datastore_path("[unterminated x"));
  EXPECT_EQ(vs::datastore_file_url("https://vc:8443/sdk", "F0/DC 0", "ds&1", "proxy dir/a#b.vmdk"),
            "https://vc:8443/folder/proxy%20dir/a%23b.vmdk?dcPath=F0%2FDC%200&dsName=ds%261");
}

}  // namespace

namespace {

TEST(VsphereParse, ServerUrlsAreValidatedAndHttpIsRefused) {
  vs::ConnectOptions o;
  o.url = "https://vc.example.com";
  auto t = vs::make_curl_transport(o);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ((*t)->endpoint(), "https://vc.example.com/sdk");
  o.url = "https://vc.example.com:8443/sdk";
  EXPECT_EQ((*vs::make_curl_transport(o))->endpoint(), "https://vc.example.com:8443/sdk");
  for (const char* bad : {"http://vc.example.com/sdk", "vc.example.com", "ftp://x/", ""}) {
    o.url = bad;
    auto r = vs::make_curl_transport(o);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, VIX_E_INVALID_HOSTNAME_SPECIFICATION) << bad;
  }
  o.url = "https://vc.example.com";
  o.thumbprint = "not-a-thumbprint";
  auto r = vs::make_curl_transport(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, VIX_E_INVALID_ARG);
}

}  // namespace

TEST(VsphereParse, RawDiskMappingBackingKeepsTheLun) {
  std::string xml =
      std::string("<val ") + kXsi +
      " XMLSchema-instance:type=\"ArrayOfVirtualDevice\">"
      "<VirtualDevice XMLSchema-instance:type=\"VirtualDisk\"><key>2001</key>"
      "<backing XMLSchema-instance:type=\"VirtualDiskRawDiskMappingVer1BackingInfo\">"
      "<fileName>[ds1] vm/vm_1.vmdk</fileName><deviceName>/vmfs/devices/disks/"
      "naa.600508b1001c3a7e1cd4b6f0e0a3e9b1</deviceName>"
      "<lunUuid>0200000000600508b1001c3a7e1cd4b6f0e0a3e9b14c4f47494341</lunUuid>"
      "<compatibilityMode>physicalMode</compatibilityMode><diskMode>independent_persistent"
      "</diskMode><uuid>U9</uuid></backing><controllerKey>1000</controllerKey>"
      "<unitNumber>1</unitNumber><capacityInBytes>1048576</capacityInBytes></VirtualDevice>" +
      disk("2000", "1000", "0", "") + "</val>";
  pugi::xml_document doc;
  auto disks = vs::parse_disks(load(doc, xml));
  ASSERT_TRUE(disks.ok()) << disks.error().message;
  ASSERT_EQ(disks->size(), 2u);
  const vs::DiskBacking& rdm = (*disks)[0].chain.at(0);
  EXPECT_EQ(rdm.type, "VirtualDiskRawDiskMappingVer1BackingInfo");
  EXPECT_EQ(rdm.file_name, "[ds1] vm/vm_1.vmdk");
  EXPECT_EQ(rdm.lun_uuid, "0200000000600508b1001c3a7e1cd4b6f0e0a3e9b14c4f47494341");
  EXPECT_EQ(rdm.device_name, "/vmfs/devices/disks/naa.600508b1001c3a7e1cd4b6f0e0a3e9b1");
  EXPECT_EQ(rdm.compatibility_mode, "physicalMode");
  EXPECT_EQ(rdm.disk_mode, "independent_persistent");
  // A flat disk has none of them.
  const vs::DiskBacking& flat = (*disks)[1].chain.at(0);
  EXPECT_TRUE(flat.lun_uuid.empty() && flat.device_name.empty() && flat.compatibility_mode.empty());
}
