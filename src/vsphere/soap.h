// SOAP envelopes and faults of the vSphere Web Services API (urn:vim25).
#pragma once

#include <pugixml.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "vsphere/http.h"

namespace vix::vsphere {

// `<name type="TYPE">VALUE</name>` with both parts escaped: moRef values are opaque and may hold
// `[`, `]`, `/`, `@` or `&`.
std::string moref_xml(std::string_view element, std::string_view type, std::string_view value);
// `<name>escaped text</name>`.
std::string text_xml(std::string_view element, std::string_view text);
// The full envelope around one method element.
std::string envelope(std::string_view method_xml);

// A parsed response: the document and the element inside soapenv:Body.
struct SoapResponse {
  std::unique_ptr<pugi::xml_document> doc;
  pugi::xml_node body;  // e.g. <RetrievePropertiesExResponse>
};

// A SOAP fault as the server reported it.
struct SoapFault {
  std::string type;         // detail's xsi:type, e.g. "InvalidLogin"
  std::string faultstring;  // for display; may be empty
  // NoPermission's detail: the privilege refused and on what ("" when absent).
  std::string privilege, object;
};

// The VixError a fault type stands for (see client.h for the table).
VixError fault_code(std::string_view fault_type);
Error fault_error(std::string_view method, const SoapFault& f);

// Reads an HTTP reply into a response or an error: HTTP 500 with a Fault -> the mapped fault,
// other statuses or non-SOAP bodies -> transport/protocol errors. `fault_out` receives the raw
// fault when there is one, so callers can react to NotAuthenticated.
Result<SoapResponse> parse_response(std::string_view method, const HttpReply& reply,
                                    SoapFault* fault_out);

}  // namespace vix::vsphere
