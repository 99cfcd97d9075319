#include "vsphere/xml.h"

#include <charconv>
#include <cstring>

namespace vix::vsphere {

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

bool xml_safe(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

std::string_view local_name(const pugi::xml_node& n) {
  std::string_view name = n.name();
  auto colon = name.rfind(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

pugi::xml_node child(const pugi::xml_node& n, std::string_view name) {
  for (pugi::xml_node c = n.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && local_name(c) == name) return c;
  }
  return {};
}

std::string child_text(const pugi::xml_node& n, std::string_view name) {
  return child(n, name).child_value();
}

std::string xsi_type(const pugi::xml_node& n) {
  for (pugi::xml_attribute a = n.first_attribute(); a; a = a.next_attribute()) {
    std::string_view an = a.name();
    if (an.size() > 5 && an.substr(an.size() - 5) == ":type") {
      std::string_view v = a.value();
      auto colon = v.rfind(':');
      return std::string(colon == std::string_view::npos ? v : v.substr(colon + 1));
    }
  }
  return {};
}

Result<void> parse_document(pugi::xml_document& doc, const std::string& body,
                            std::string_view what) {
  // No parse_doctype processing happens beyond skipping, and pugixml never expands custom
  // entities, so entity-expansion bombs stay their literal size.
  pugi::xml_parse_result r =
      doc.load_buffer(body.data(), body.size(), pugi::parse_default & ~pugi::parse_wconv_attribute,
                      pugi::encoding_utf8);
  if (!r) {
    return fail(VIX_E_INVALID_XML, std::string(what) + ": malformed XML response (" +
                                       r.description() + " at offset " + std::to_string(r.offset) +
                                       ")");
  }
  return ok();
}

static std::string_view trim(std::string_view s) {
  while (!s.empty() && std::strchr(" \t\r\n", s.front())) s.remove_prefix(1);
  while (!s.empty() && std::strchr(" \t\r\n", s.back())) s.remove_suffix(1);
  return s;
}

static Error bad_value(std::string_view field, std::string_view text, const char* kind) {
  std::string shown(text.substr(0, 64));
  if (text.size() > 64) shown += "...";
  return fail(VIX_E_INVALID_XML,
              "vSphere response: " + std::string(field) + " '" + shown + "' is not " + kind);
}

Result<int64_t> parse_int(std::string_view text, std::string_view field) {
  std::string_view t = trim(text);
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || p != t.data() + t.size()) {
    return bad_value(field, text, "an integer");
  }
  return v;
}

Result<bool> parse_bool(std::string_view text, std::string_view field) {
  std::string_view t = trim(text);
  if (t == "true" || t == "1") return true;
  if (t == "false" || t == "0") return false;
  return bad_value(field, text, "a boolean");
}

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar.
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

Result<int64_t> parse_datetime_ns(std::string_view text, std::string_view field) {
  std::string_view t = trim(text);
  size_t pos = 0;
  auto digits = [&](size_t n, int64_t& out) {
    if (pos + n > t.size()) return false;
    out = 0;
    for (size_t i = 0; i < n; ++i) {
      char c = t[pos + i];
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    pos += n;
    return true;
  };
  auto expect = [&](char c) {
    if (pos < t.size() && t[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  };
  int64_t y, mo, d, h, mi, s;
  if (!digits(4, y) || !expect('-') || !digits(2, mo) || !expect('-') || !digits(2, d) ||
      !expect('T') || !digits(2, h) || !expect(':') || !digits(2, mi) || !expect(':') ||
      !digits(2, s) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) {
    return bad_value(field, text, "an xsd:dateTime");
  }
  int64_t frac_ns = 0;
  if (expect('.')) {
    int64_t scale = 100000000;
    size_t start = pos;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
      frac_ns += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad_value(field, text, "an xsd:dateTime");
  }
  int64_t offset_s = 0;
  if (expect('Z')) {
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    int sign = t[pos] == '-' ? -1 : 1;
    ++pos;
    int64_t oh, om;
    if (!digits(2, oh) || !expect(':') || !digits(2, om) || oh > 23 || om > 59) {
      return bad_value(field, text, "an xsd:dateTime");
    }
    offset_s = sign * (oh * 3600 + om * 60);
  }
  if (pos != t.size()) return bad_value(field, text, "an xsd:dateTime");
  int64_t secs = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 +
                 h * 3600 + mi * 60 + s - offset_s;
  return secs * 1000000000 + frac_ns;
}

}  // namespace vix::vsphere
