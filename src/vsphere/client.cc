#include "vsphere/client.h"

#include <map>
#include <thread>

#include "vsphere/client_internal.h"
#include "vsphere/parse.h"
#include "vsphere/xml.h"

namespace vix::vsphere {

using detail::prop_set;

namespace {

constexpr size_t kMaxPages = 100000;

Result<void> check_request_text(std::string_view what, std::string_view s) {
  if (!xml_safe(s)) {
    return fail(VIX_E_INVALID_ARG,
                std::string(what) + ": contains control characters XML cannot carry");
  }
  return ok();
}

// Fills an ObjectContent from an `objects` element.
ObjectContent read_object(const pugi::xml_node& objects) {
  ObjectContent oc;
  pugi::xml_node obj = child(objects, "obj");
  oc.obj.type = obj.attribute("type").value();
  oc.obj.value = obj.child_value();
  for (pugi::xml_node n = objects.first_child(); n; n = n.next_sibling()) {
    if (n.type() != pugi::node_element) continue;
    std::string_view ln = local_name(n);
    if (ln == "propSet") {
      oc.props.emplace_back(child_text(n, "name"), child(n, "val"));
    } else if (ln == "missingSet") {
      oc.missing.emplace_back(child_text(n, "path"), xsi_type(child(child(n, "fault"), "fault")));
    }
  }
  return oc;
}

}  // namespace

pugi::xml_node ObjectContent::find(std::string_view name) const {
  for (const auto& [n, v] : props) {
    if (n == name) return v;
  }
  return {};
}

Result<std::unique_ptr<Client>> Client::connect(const ConnectOptions& options) {
  VIX_ASSIGN_OR_RETURN(auto transport, make_curl_transport(options));
  return std::make_unique<Client>(std::move(transport));
}

Client::Client(std::unique_ptr<Transport> transport) : transport_(std::move(transport)) {}
Client::~Client() = default;

std::string Client::endpoint() const {
  return transport_->endpoint();
}
std::string Client::session_cookie() const {
  return transport_->cookie();
}

std::string Client::soap_action(bool internal) const {
  const std::string ns = internal ? "urn:internalvim25/" : "urn:vim25/";
  std::lock_guard lock(mu_);
  if (sc_ && !sc_->api_version.empty()) return ns + sc_->api_version;
  return ns + "6.5";
}

Result<SoapResponse> Client::call_once(const std::string& method, const MoRef& this_ref,
                                       const std::string& method_body, SoapFault* fault,
                                       bool internal) {
  std::string xml =
      "<" + method + (internal ? " xmlns=\"urn:internalvim25\">" : " xmlns=\"urn:vim25\">") +
      moref_xml("_this", this_ref.type, this_ref.value) + method_body + "</" + method + ">";
  VIX_ASSIGN_OR_RETURN(HttpReply reply, transport_->post(soap_action(internal), envelope(xml)));
  VIX_ASSIGN_OR_RETURN(SoapResponse r, parse_response(method, reply, fault));
  if (method == "RetrievePropertiesEx" || method == "ContinueRetrievePropertiesEx") {
    // Without a session these answer 200 with every path in missingSet (vcsim); treat that as
    // the NotAuthenticated fault it stands for.
    pugi::xml_node rv = child(r.body, "returnval");
    for (pugi::xml_node o = rv.first_child(); o; o = o.next_sibling()) {
      if (local_name(o) != "objects") continue;
      for (pugi::xml_node m = o.first_child(); m; m = m.next_sibling()) {
        if (local_name(m) == "missingSet" &&
            xsi_type(child(child(m, "fault"), "fault")) == "NotAuthenticated") {
          SoapFault f{"NotAuthenticated", "not logged in (missingSet)", "", ""};
          if (fault) *fault = f;
          return fault_error(method, f);
        }
      }
      break;
    }
  }
  return r;
}

Result<SoapResponse> Client::call(const std::string& method, const MoRef& this_ref,
                                  const std::string& method_body) {
  return call_with_relogin(method, this_ref, method_body, false);
}

Result<SoapResponse> Client::call_internal(const std::string& method, const MoRef& this_ref,
                                           const std::string& method_body) {
  return call_with_relogin(method, this_ref, method_body, true);
}

Result<SoapResponse> Client::call_with_relogin(const std::string& method, const MoRef& this_ref,
                                               const std::string& method_body, bool internal) {
  uint64_t gen;
  {
    std::lock_guard lock(mu_);
    gen = generation_;
  }
  SoapFault fault;
  auto r = call_once(method, this_ref, method_body, &fault, internal);
  if (r.ok() || fault.type != "NotAuthenticated") return r;
  auto again = relogin(gen);
  if (!again.ok()) {
    Error e = std::move(again).error();
    e.message = r.error().message + "; " + e.message;
    return e;
  }
  return call_once(method, this_ref, method_body, nullptr, internal);
}

Result<ServiceContent> Client::service_content() {
  {
    std::lock_guard lock(mu_);
    if (sc_) return *sc_;
  }
  VIX_ASSIGN_OR_RETURN(
      SoapResponse r,
      call_once("RetrieveServiceContent", {"ServiceInstance", "ServiceInstance"}, "", nullptr));
  pugi::xml_node rv = child(r.body, "returnval");
  ServiceContent sc;
  sc.root_folder = child_text(rv, "rootFolder");
  sc.property_collector = child_text(rv, "propertyCollector");
  sc.view_manager = child_text(rv, "viewManager");
  sc.session_manager = child_text(rv, "sessionManager");
  sc.authorization_manager = child_text(rv, "authorizationManager");
  pugi::xml_node about = child(rv, "about");
  sc.api_version = child_text(about, "apiVersion");
  sc.api_type = child_text(about, "apiType");
  sc.full_name = child_text(about, "fullName");
  sc.instance_uuid = child_text(about, "instanceUuid");
  if (sc.root_folder.empty() || sc.property_collector.empty() || sc.session_manager.empty()) {
    return fail(VIX_E_INVALID_XML,
                "vSphere RetrieveServiceContent: rootFolder, propertyCollector or sessionManager "
                "missing");
  }
  // The version goes into a header: accept only a plain dotted number.
  bool sane = !sc.api_version.empty() && sc.api_version.size() <= 16;
  for (char c : sc.api_version) sane = sane && ((c >= '0' && c <= '9') || c == '.');
  if (!sane) sc.api_version.clear();
  std::lock_guard lock(mu_);
  sc_ = std::make_unique<ServiceContent>(sc);
  return sc;
}

Result<void> Client::do_login(const std::string& user, const std::string& password) {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, service_content());
  // A second Login on a live cookie is refused: always start from a fresh one.
  transport_->set_cookie("");
  VIX_TRY(call_once("Login", {"SessionManager", sc.session_manager},
                    text_xml("userName", user) + text_xml("password", password), nullptr));
  if (transport_->cookie().empty()) {
    return fail(VIX_E_AUTHENTICATION_FAIL,
                "vSphere Login: the server sent no vmware_soap_session cookie");
  }
  std::lock_guard lock(mu_);
  ++generation_;
  return ok();
}

Result<void> Client::login(const std::string& user, const std::string& password) {
  VIX_TRY(check_request_text("user name", user));
  VIX_TRY(check_request_text("password", password));
  std::lock_guard login_lock(login_mu_);
  VIX_TRY(do_login(user, password));
  std::lock_guard lock(mu_);
  user_ = user;
  password_ = password;
  can_relogin_ = true;
  return ok();
}

Result<void> Client::relogin(uint64_t failed_generation) {
  std::lock_guard login_lock(login_mu_);
  std::string user, password;
  {
    std::lock_guard lock(mu_);
    if (generation_ != failed_generation) return ok();  // another thread already logged in again
    if (!can_relogin_) {
      return fail(VIX_E_HOST_NOT_CONNECTED,
                  "no credentials to log in again (session expired or logged out)");
    }
    user = user_;
    password = password_;
  }
  auto r = do_login(user, password);
  if (!r.ok()) {
    Error e = std::move(r).error();
    e.message = "logging in again failed: " + e.message;
    return e;
  }
  return ok();
}

Result<std::string> Client::renew_session(const std::string& rejected) {
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
  }
  if (std::string current = session_cookie(); current != rejected) return current;
  VIX_TRY(relogin(generation));
  return session_cookie();
}

// No re-login after this: the session is the caller's (cookie) or over (logout).
void Client::forget_credentials() {
  std::lock_guard login_lock(login_mu_);
  std::lock_guard lock(mu_);
  can_relogin_ = false;
  user_.clear();
  password_.clear();
  ++generation_;
}

Result<void> Client::login_with_session(const std::string& cookie) {
  VIX_TRY(check_request_text("session cookie", cookie));
  if (cookie.empty() || cookie.find_first_of(";\r\n") != std::string::npos) {
    return fail(VIX_E_INVALID_ARG, "session cookie: empty or holds ';' or a line break");
  }
  forget_credentials();
  transport_->set_cookie(cookie);
  auto key = current_session_key();
  if (!key.ok() || key->empty()) {
    transport_->set_cookie("");
    return fail(VIX_E_AUTHENTICATION_FAIL,
                "vSphere: session cookie rejected" +
                    (key.ok() ? std::string(" (no current session)") : ": " + key.error().message));
  }
  return ok();
}

Result<void> Client::logout() {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, service_content());
  auto r = call_once("Logout", {"SessionManager", sc.session_manager}, "", nullptr);
  forget_credentials();
  transport_->set_cookie("");
  if (!r.ok()) return std::move(r).error();
  return ok();
}

Result<std::string> Client::current_session_key() {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, service_content());
  std::string key;
  VIX_TRY(retrieve("<specSet>" + prop_set("SessionManager", {"currentSession"}) + "<objectSet>" +
                       moref_xml("obj", "SessionManager", sc.session_manager) +
                       "</objectSet></specSet>",
                   [&](const ObjectContent& oc) -> Result<void> {
                     key = child_text(oc.find("currentSession"), "key");
                     return ok();
                   }));
  return key;
}

Result<std::vector<std::string>> Client::session_keys() {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, service_content());
  std::vector<std::string> keys;
  VIX_TRY(retrieve("<specSet>" + prop_set("SessionManager", {"sessionList"}) + "<objectSet>" +
                       moref_xml("obj", "SessionManager", sc.session_manager) +
                       "</objectSet></specSet>",
                   [&](const ObjectContent& oc) -> Result<void> {
                     pugi::xml_node list = oc.find("sessionList");
                     for (pugi::xml_node s = list.first_child(); s; s = s.next_sibling()) {
                       if (s.type() == pugi::node_element) keys.push_back(child_text(s, "key"));
                     }
                     return ok();
                   }));
  return keys;
}

Result<void> Client::retrieve(const std::string& spec_set_xml,
                              const std::function<Result<void>(const ObjectContent&)>& visit) {
  VIX_ASSIGN_OR_RETURN(ServiceContent sc, service_content());
  MoRef pc{"PropertyCollector", sc.property_collector};
  VIX_ASSIGN_OR_RETURN(SoapResponse r,
                       call("RetrievePropertiesEx", pc, spec_set_xml + "<options/>"));
  for (size_t page = 0;; ++page) {
    pugi::xml_node rv = child(r.body, "returnval");
    std::string token = child_text(rv, "token");
    for (pugi::xml_node o = rv.first_child(); o; o = o.next_sibling()) {
      if (o.type() != pugi::node_element || local_name(o) != "objects") continue;
      auto v = visit(read_object(o));
      if (!v.ok()) {
        if (!token.empty()) {
          (void)call_once("CancelRetrievePropertiesEx", pc, text_xml("token", token), nullptr);
        }
        return v;
      }
    }
    if (token.empty()) return ok();
    if (page + 1 >= kMaxPages) {
      return fail(VIX_E_INVALID_XML, "vSphere RetrievePropertiesEx: more than " +
                                         std::to_string(kMaxPages) + " result pages");
    }
    VIX_ASSIGN_OR_RETURN(r, call("ContinueRetrievePropertiesEx", pc, text_xml("token", token)));
  }
}

Result<std::vector<VirtualDisk>> Client::disks_of(const MoRef& moref) {
  std::vector<VirtualDisk> disks;
  bool seen = false;
  VIX_TRY(retrieve("<specSet>" + prop_set(moref.type, {"config.hardware.device"}) + "<objectSet>" +
                       moref_xml("obj", moref.type, moref.value) + "</objectSet></specSet>",
                   [&](const ObjectContent& oc) -> Result<void> {
                     seen = true;
                     if (pugi::xml_node val = oc.find("config.hardware.device")) {
                       VIX_ASSIGN_OR_RETURN(disks, parse_disks(val));
                     }
                     return ok();
                   }));
  if (!seen) {
    return fail(VIX_E_OBJECT_NOT_FOUND,
                "vSphere: " + moref.type + " " + moref.value + " not found");
  }
  return disks;
}

}  // namespace vix::vsphere
