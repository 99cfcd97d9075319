#include "vsphere/changed_areas.h"

#include <sstream>

#include "vsphere/soap.h"
#include "vsphere/xml.h"

namespace vix::vsphere {

namespace {

// The reply as the server wrote it, for error messages (bounded).
std::string quote(const pugi::xml_node& n) {
  std::ostringstream out;
  n.print(out, "", pugi::format_raw);
  std::string s = out.str();
  if (s.size() > 600) s = s.substr(0, 600) + "...";
  return s;
}

// A non-negative integer child of parent; the error names `field` (e.g. "changedArea[2].start").
Result<uint64_t> non_negative(const pugi::xml_node& parent, std::string_view name,
                              const std::string& field) {
  pugi::xml_node n = child(parent, name);
  if (!n) return fail(VIX_E_INVALID_XML, "no " + field);
  VIX_ASSIGN_OR_RETURN(int64_t v, parse_int(n.child_value(), field));
  if (v < 0) return fail(VIX_E_INVALID_XML, field + " " + std::to_string(v) + " is negative");
  return static_cast<uint64_t>(v);
}

}  // namespace

Result<ChangeWindow> parse_change_window(const pugi::xml_node& returnval, uint64_t asked,
                                         uint64_t capacity, const std::string& what) {
  const std::string where = "vSphere " + what + " at offset " + std::to_string(asked);
  auto bad = [&](const std::string& why) {
    return fail(VIX_E_INVALID_XML, where + ": " + why + " (reply: " + quote(returnval) + ")");
  };
  if (!returnval) return fail(VIX_E_INVALID_XML, where + ": reply without a DiskChangeInfo");
  ChangeWindow w;
  auto start = non_negative(returnval, "startOffset", "startOffset");
  if (!start.ok()) return bad(start.error().message);
  auto length = non_negative(returnval, "length", "length");
  if (!length.ok()) return bad(length.error().message);
  w.start_offset = *start;
  w.length = *length;
  if (w.start_offset != asked) {
    return bad("startOffset " + std::to_string(w.start_offset) + " is not the requested " +
               std::to_string(asked));
  }
  if (w.length == 0) return bad("length 0: the window does not advance");
  if (w.length > capacity - w.start_offset) {
    return bad("the window [" + std::to_string(w.start_offset) + ", +" + std::to_string(w.length) +
               ") runs past the disk's capacity " + std::to_string(capacity));
  }
  const uint64_t end = w.start_offset + w.length;
  uint64_t prev_end = w.start_offset;
  size_t index = 0;
  for (pugi::xml_node a = returnval.first_child(); a; a = a.next_sibling()) {
    if (a.type() != pugi::node_element || local_name(a) != "changedArea") continue;
    const std::string field = "changedArea[" + std::to_string(index++) + "]";
    auto s = non_negative(a, "start", field + ".start");
    if (!s.ok()) return bad(s.error().message);
    auto l = non_negative(a, "length", field + ".length");
    if (!l.ok()) return bad(l.error().message);
    if (*l == 0) return bad(field + " has length 0");
    if (*s < w.start_offset || *s >= end || *l > end - *s) {
      return bad(field + " [" + std::to_string(*s) + ", +" + std::to_string(*l) +
                 ") lies outside the window [" + std::to_string(w.start_offset) + ", " +
                 std::to_string(end) + ")");
    }
    if (*s < prev_end) {
      return bad(field + " at " + std::to_string(*s) + " overlaps or precedes the area before it" +
                 " (which ends at " + std::to_string(prev_end) + ")");
    }
    if (w.areas.size() >= kMaxChangedAreas) {
      return bad("more than " + std::to_string(kMaxChangedAreas) + " areas");
    }
    prev_end = *s + *l;
    w.areas.push_back({*s, *l});
  }
  return w;
}

Result<std::vector<ChangedArea>> query_changed_areas(Client& client, const std::string& vm,
                                                     const std::string& snapshot,
                                                     int32_t device_key, uint64_t capacity,
                                                     const std::string& change_id) {
  std::string what = "QueryChangedDiskAreas " + vm + (snapshot.empty() ? "" : " " + snapshot) +
                     " disk " + std::to_string(device_key);
  if (capacity == 0 || capacity > static_cast<uint64_t>(INT64_MAX)) {
    return fail(VIX_E_INVALID_ARG,
                what + ": capacity " + std::to_string(capacity) + " is not a disk's size");
  }
  if (change_id.empty() || !xml_safe(change_id)) {
    return fail(VIX_E_INVALID_ARG, what + ": no usable changeId");
  }
  std::vector<ChangedArea> out;
  uint64_t offset = 0;
  for (uint64_t round = 0; offset < capacity; ++round) {
    if (round >= kMaxChangeWindows) {
      return fail(VIX_E_INVALID_XML, "vSphere " + what + ": more than " +
                                         std::to_string(kMaxChangeWindows) +
                                         " windows before the end of the disk (at offset " +
                                         std::to_string(offset) + ")");
    }
    std::string body;
    if (!snapshot.empty()) body += moref_xml("snapshot", "VirtualMachineSnapshot", snapshot);
    body += "<deviceKey>" + std::to_string(device_key) + "</deviceKey><startOffset>" +
            std::to_string(offset) + "</startOffset>" + text_xml("changeId", change_id);
    auto reply = client.call("QueryChangedDiskAreas", {"VirtualMachine", vm}, body);
    if (!reply.ok()) {
      Error e = std::move(reply).error();
      e.message +=
          " (" + what + ", changeId " + change_id + ", at offset " + std::to_string(offset) + ")";
      return e;
    }
    VIX_ASSIGN_OR_RETURN(ChangeWindow w, parse_change_window(child(reply->body, "returnval"),
                                                             offset, capacity, what));
    for (const ChangedArea& a : w.areas) {
      if (!out.empty() && out.back().start + out.back().length == a.start) {
        out.back().length += a.length;
      } else {
        if (out.size() >= kMaxChangedAreas) {
          return fail(VIX_E_INVALID_XML, "vSphere " + what + ": more than " +
                                             std::to_string(kMaxChangedAreas) + " areas");
        }
        out.push_back(a);
      }
    }
    offset += w.length;
  }
  return out;
}

}  // namespace vix::vsphere
