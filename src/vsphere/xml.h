// XML helpers for the vSphere SOAP client: request escaping, namespace-blind navigation of
// pugixml trees (responses mix `soapenv:`, `xsi:` and `XMLSchema-instance:` prefixes), and strict
// conversion of element text to numbers and times. Every conversion failure is an Error naming the
// field, so a response with wrong types is refused instead of being half-understood.
#pragma once

#include <pugixml.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace vix::vsphere {

// Escapes &, <, >, " and ' so that s can be placed in element text or an attribute value.
// Control characters that XML 1.0 cannot carry are refused by the caller through xml_safe().
std::string xml_escape(std::string_view s);
// False when s holds a byte XML 1.0 cannot represent (C0 controls except tab, CR, LF).
bool xml_safe(std::string_view s);

// The name of n without its namespace prefix.
std::string_view local_name(const pugi::xml_node& n);
// First child element of n whose local name is `name` (empty node if none).
pugi::xml_node child(const pugi::xml_node& n, std::string_view name);
// Text of the first child element named `name` ("" if absent).
std::string child_text(const pugi::xml_node& n, std::string_view name);
// The polymorphic type of n: the value of the attribute whose name ends in ":type"
// (xsi:type or XMLSchema-instance:type), without any prefix on the value ("xsd:string" ->
// "string").
std::string xsi_type(const pugi::xml_node& n);

// Parses a response body. pugixml's parser is iterative, so depth is no danger to the stack; the
// caller bounds the size before this is called.
Result<void> parse_document(pugi::xml_document& doc, const std::string& body,
                            std::string_view what);

// Strict number parsing: the whole text (after trimming whitespace) must be the number.
Result<int64_t> parse_int(std::string_view text, std::string_view field);
Result<bool> parse_bool(std::string_view text, std::string_view field);

// xsd:dateTime (`2026-11-25T09:46:51.287848907Z`, any number of fraction digits, Z or +hh:mm or
// none) to nanoseconds since the epoch, UTC.
Result<int64_t> parse_datetime_ns(std::string_view text, std::string_view field);

}  // namespace vix::vsphere
