// Request-building helpers shared by the client's source files.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "vsphere/soap.h"
#include "vsphere/xml.h"

namespace vix::vsphere::detail {

inline std::vector<std::string> moref_list(const pugi::xml_node& val) {
  std::vector<std::string> out;
  for (pugi::xml_node n = val.first_child(); n; n = n.next_sibling()) {
    if (n.type() == pugi::node_element) out.emplace_back(n.child_value());
  }
  return out;
}

inline std::string prop_set(std::string_view type, std::initializer_list<std::string_view> paths) {
  std::string out = "<propSet><type>" + std::string(type) + "</type>";
  for (auto p : paths) out += "<pathSet>" + std::string(p) + "</pathSet>";
  return out + "</propSet>";
}

// An objectSet that starts at a ContainerView and visits everything in it.
inline std::string view_object_set(const std::string& view) {
  return "<objectSet>" + moref_xml("obj", "ContainerView", view) +
         "<skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>traverseView</name>"
         "<type>ContainerView</type><path>view</path><skip>false</skip></selectSet>"
         "</objectSet>";
}

}  // namespace vix::vsphere::detail
