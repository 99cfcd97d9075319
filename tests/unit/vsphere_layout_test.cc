// layoutEx parsing: each disk's stored bytes are the sizes of the distinct files of its chain,
// now and as each snapshot recorded it; hostile values are errors that name the field.
#include <gtest/gtest.h>

#include <string>

#include "vsphere/inventory.h"
#include "vsphere/parse.h"
#include "vsphere/xml.h"

namespace vs = vix::vsphere;

namespace {

pugi::xml_node load(pugi::xml_document& doc, const std::string& xml) {
  EXPECT_TRUE(vs::parse_document(doc, xml, "test").ok());
  return doc.document_element();
}

std::string file(int key, const std::string& name, const std::string& size) {
  return "<file><key>" + std::to_string(key) + "</key><name>" + name +
         "</name><type>diskExtent</type><size>" + size + "</size><uniqueSize>" + size +
         "</uniqueSize><accessible>true</accessible></file>";
}

std::string disk(int key, const std::string& chains) {
  return "<disk><key>" + std::to_string(key) + "</key>" + chains + "</disk>";
}

std::string chain(const std::string& keys) {
  return "<chain>" + keys + "</chain>";
}

std::string fk(int k) {
  return "<fileKey>" + std::to_string(k) + "</fileKey>";
}

// A base disk (descriptor 1, extent 2), a delta made by snapshot-1 (descriptor 3, extent 4),
// and a second disk that layoutEx does not describe.
std::string layout() {
  return "<val>" + file(0, "[ds] vm/vm.vmx", "4000") + file(1, "[ds] vm/vm.vmdk", "600") +
         file(2, "[ds] vm/vm-flat.vmdk", "10485760") + file(3, "[ds] vm/vm-000001.vmdk", "400") +
         file(4, "[ds] vm/vm-000001-delta.vmdk", "65536") +
         disk(2000, chain(fk(1) + fk(2)) + chain(fk(3) + fk(4))) +
         "<snapshot><key type=\"VirtualMachineSnapshot\">snapshot-1</key><dataKey>0</dataKey>"
         "<memoryKey>-1</memoryKey>" +
         disk(2000, chain(fk(1) + fk(2) + fk(2))) +
         "</snapshot><timestamp>2024-01-01T00:00:00Z</timestamp></val>";
}

vs::VirtualDisk vdisk(int32_t key) {
  vs::VirtualDisk d;
  d.key = key;
  return d;
}

TEST(VsphereLayout, StoredBytesSumTheChainNowAndAtEachSnapshot) {
  pugi::xml_document doc;
  auto l = vs::parse_layout_ex(load(doc, layout()));
  ASSERT_TRUE(l.ok()) << l.error().message;
  vs::VirtualMachine vm;
  vm.disks = {vdisk(2000), vdisk(2001)};
  vs::Snapshot s;
  s.moref = "snapshot-1";
  s.disks = {vdisk(2000)};
  vs::Snapshot unknown;
  unknown.moref = "snapshot-9";
  unknown.disks = {vdisk(2000)};
  s.children.push_back(unknown);
  vm.snapshots.push_back(s);
  vs::apply_file_layout(*l, &vm);
  EXPECT_EQ(vm.disks[0].stored_bytes, 600u + 10485760u + 400u + 65536u);
  EXPECT_EQ(vm.disks[1].stored_bytes, 0u);  // not in layoutEx: unknown
  // The snapshot's recorded chain, a file listed twice counted once.
  EXPECT_EQ(vm.snapshots[0].disks[0].stored_bytes, 600u + 10485760u);
  EXPECT_EQ(vm.snapshots[0].children[0].disks[0].stored_bytes, 0u);
}

TEST(VsphereLayout, HostileValuesAreErrorsNamingTheField) {
  const std::pair<std::string, std::string> cases[] = {
      {"<val>" + file(1, "a", "-5") + "</val>", "layoutEx file 1 size < 0"},
      {"<val>" + file(1, "a", "12x") + "</val>", "layoutEx file 1 size"},
      {"<val><file><key>99999999999</key></file></val>", "key"},
      {"<val>" + disk(7, chain("<fileKey>nope</fileKey>")) + "</val>", "layoutEx disk 7 fileKey"},
      {"<val><snapshot>" + disk(7, "") + "</snapshot></val>", "snapshot without a key"},
  };
  for (const auto& [xml, want] : cases) {
    pugi::xml_document doc;
    auto l = vs::parse_layout_ex(load(doc, xml));
    ASSERT_FALSE(l.ok()) << xml;
    EXPECT_NE(l.error().message.find(want), std::string::npos) << l.error().message;
  }
  // Sizes that overflow the sum saturate instead of wrapping.
  pugi::xml_document doc;
  auto l = vs::parse_layout_ex(load(doc, "<val>" + file(1, "a", "9223372036854775807") +
                                             file(2, "b", "9223372036854775807") +
                                             file(3, "c", "9223372036854775807") +
                                             disk(5, chain(fk(1) + fk(2) + fk(3))) + "</val>"));
  ASSERT_TRUE(l.ok()) << l.error().message;
  vs::VirtualMachine vm;
  vm.disks = {vdisk(5)};
  vs::apply_file_layout(*l, &vm);
  EXPECT_EQ(vm.disks[0].stored_bytes, UINT64_MAX);
}

}  // namespace
