#include "vsphere/soap.h"

#include "vsphere/xml.h"

namespace vix::vsphere {

std::string moref_xml(std::string_view element, std::string_view type, std::string_view value) {
  std::string out = "<";
  out += element;
  out += " type=\"" + xml_escape(type) + "\">" + xml_escape(value) + "</";
  out += element;
  out += ">";
  return out;
}

std::string text_xml(std::string_view element, std::string_view text) {
  std::string out = "<";
  out += element;
  out += ">" + xml_escape(text) + "</";
  out += element;
  out += ">";
  return out;
}

std::string envelope(std::string_view method_xml) {
  std::string out =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>";
  out += method_xml;
  out += "</soapenv:Body></soapenv:Envelope>";
  return out;
}

VixError fault_code(std::string_view t) {
  if (t == "InvalidLogin" || t == "NoPermission") return VIX_E_AUTHENTICATION_FAIL;
  if (t == "NotAuthenticated") return VIX_E_HOST_NOT_CONNECTED;
  if (t == "ManagedObjectNotFound") return VIX_E_OBJECT_NOT_FOUND;
  if (t == "FileNotFound") return VIX_E_FILE_NOT_FOUND;
  if (t == "FileAlreadyExists") return VIX_E_FILE_ALREADY_EXISTS;
  if (t == "FileLocked") return VIX_E_FILE_ALREADY_LOCKED;
  if (t == "FileFault" || t == "CannotAccessFile" || t == "FileTooLarge") return VIX_E_FILE_ERROR;
  if (t == "InvalidProperty" || t == "InvalidRequest" || t == "MethodNotFound" ||
      t == "NotSupported" || t == "NotImplemented") {
    return VIX_E_NOT_SUPPORTED;
  }
  if (t == "InvalidArgument" || t == "InvalidType") return VIX_E_INVALID_ARG;
  if (t == "TaskInProgress" || t == "InvalidState" || t == "InvalidPowerState") {
    return VIX_E_OBJECT_IS_BUSY;
  }
  if (t == "RequestCanceled") return VIX_E_CANCELLED;
  return VIX_E_FAIL;
}

Error fault_error(std::string_view method, const SoapFault& f) {
  std::string msg = "vSphere " + std::string(method) + ": SOAP fault " +
                    (f.type.empty() ? std::string("(untyped)") : f.type);
  if (!f.faultstring.empty()) msg += ": " + f.faultstring.substr(0, 1024);
  if (!f.privilege.empty()) {
    msg += " (privilege " + f.privilege.substr(0, 256) +
           (f.object.empty() ? "" : " on " + f.object.substr(0, 256)) + ")";
  }
  return fail(fault_code(f.type), msg);
}

static pugi::xml_node soap_body(const pugi::xml_document& doc) {
  pugi::xml_node env = doc.document_element();
  if (local_name(env) != "Envelope") return {};
  return child(env, "Body");
}

static SoapFault read_fault(const pugi::xml_node& fault) {
  SoapFault f;
  f.faultstring = child_text(fault, "faultstring");
  pugi::xml_node detail = child(fault, "detail");
  pugi::xml_node first =
      detail.find_child([](const pugi::xml_node& n) { return n.type() == pugi::node_element; });
  if (first) {
    f.type = xsi_type(first);
    if (f.type.empty()) {
      // The element is named after the type plus "Fault" (InvalidLoginFault).
      std::string_view name = local_name(first);
      if (name.size() > 5 && name.substr(name.size() - 5) == "Fault") {
        name.remove_suffix(5);
      }
      f.type = std::string(name);
    }
    f.privilege = child_text(first, "privilegeId");
    f.object = child_text(first, "object");
  }
  return f;
}

Result<SoapResponse> parse_response(std::string_view method, const HttpReply& reply,
                                    SoapFault* fault_out) {
  std::string what = "vSphere " + std::string(method);
  if (reply.status != 200 && reply.status != 500) {
    return fail(VIX_E_CANNOT_CONNECT_TO_HOST,
                what + ": unexpected HTTP status " + std::to_string(reply.status));
  }
  SoapResponse r;
  r.doc = std::make_unique<pugi::xml_document>();
  VIX_TRY(parse_document(*r.doc, reply.body, what));
  pugi::xml_node body = soap_body(*r.doc);
  if (!body) return fail(VIX_E_INVALID_XML, what + ": response is not a SOAP envelope");
  pugi::xml_node first =
      body.find_child([](const pugi::xml_node& n) { return n.type() == pugi::node_element; });
  if (first && local_name(first) == "Fault") {
    SoapFault f = read_fault(first);
    if (fault_out) *fault_out = f;
    return fault_error(method, f);
  }
  if (reply.status != 200) {
    return fail(VIX_E_INVALID_XML, what + ": HTTP 500 without a SOAP fault");
  }
  std::string expected = std::string(method) + "Response";
  if (!first || local_name(first) != expected) {
    return fail(VIX_E_INVALID_XML, what + ": expected <" + expected + "> in the SOAP body, got <" +
                                       (first ? std::string(first.name()) : std::string()) + ">");
  }
  r.body = first;
  return r;
}

}  // namespace vix::vsphere
