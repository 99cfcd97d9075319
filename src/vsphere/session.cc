#include "vsphere/session.h"

#include <filesystem>

#include "common/log.h"

namespace vix {

namespace {

constexpr IntKey kSoapTimeout{"vixfs.soap.timeoutMs", 100, 3600000, 120000,
                              "how long one SOAP or https request may take (ms)"};
constexpr IntKey kSoapMaxResponse{"vixfs.soap.maxResponseMB", 1, 4096, 256,
                                  "largest SOAP response accepted (MiB)"};

std::string server_url(const ConnectSpec& spec) {
  if (spec.server.find("://") != std::string::npos) return spec.server;
  std::string host = spec.server;
  // A bare IPv6 literal needs brackets in a URL.
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return "https://" + host + ":" + std::to_string(spec.port == 0 ? 443 : spec.port);
}

}  // namespace

Result<std::string> ServerSession::renew_cookie(const std::string& rejected) {
  VIX_ASSIGN_OR_RETURN(std::string fresh, client_->renew_session(rejected));
  log::info(endpoint() + ": session renewed for a transport");
  return fresh;
}

std::string vm_moref_from_vmx_spec(const std::string& vmx_spec) {
  size_t pos = 0;
  while (pos < vmx_spec.size()) {
    size_t end = vmx_spec.find_first_of("/;", pos);
    if (end == std::string::npos) end = vmx_spec.size();
    std::string item = vmx_spec.substr(pos, end - pos);
    if (item.rfind("moref=", 0) == 0) return item.substr(6);
    pos = end + 1;
  }
  return "";
}

Result<long> soap_timeout_ms(const Config& config) {
  VIX_ASSIGN_OR_RETURN(int64_t ms, config.get(kSoapTimeout));
  return static_cast<long>(ms);
}

KeyList session_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kSoapTimeout, &kSoapMaxResponse, &kTlsCaFile};
  return kKeys;
}

Result<std::shared_ptr<ServerSession>> ServerSession::login(const ConnectSpec& spec,
                                                            const Config& config) {
  std::shared_ptr<ServerSession> s(new ServerSession());
  s->options_.url = server_url(spec);
  s->options_.thumbprint = spec.thumbprint;
  s->options_.ca_file = config.get(kTlsCaFile);
  VIX_ASSIGN_OR_RETURN(int64_t max_mb, config.get(kSoapMaxResponse));
  s->options_.max_response_bytes = static_cast<uint64_t>(max_mb) << 20;
  VIX_ASSIGN_OR_RETURN(s->options_.timeout_ms, soap_timeout_ms(config));
  if (!s->options_.ca_file.empty() && !std::filesystem::exists(s->options_.ca_file)) {
    return fail(VIX_E_FILE_NOT_FOUND,
                std::string(kTlsCaFile.name) + " = " + s->options_.ca_file + ": no such file");
  }

  VIX_ASSIGN_OR_RETURN(s->client_, vsphere::Client::connect(s->options_));
  if (spec.cred_type == VIXDISKLIB_CRED_SESSIONID) {
    if (spec.cookie.empty()) {
      return fail(VIX_E_INVALID_ARG, spec.server + ": VIXDISKLIB_CRED_SESSIONID without a cookie");
    }
    VIX_TRY(s->client_->login_with_session(spec.cookie));
  } else if (spec.cred_type == VIXDISKLIB_CRED_UID) {
    VIX_TRY(s->client_->login(spec.user, spec.password));
  } else {
    return fail(VIX_E_NOT_SUPPORTED, spec.server + ": credential type " +
                                         std::to_string(static_cast<int>(spec.cred_type)) +
                                         " (only user/password and session cookie)");
  }
  // A borrowed session (VIXDISKLIB_CRED_SESSIONID) belongs to the caller: Disconnect leaves it.
  s->logged_in_ = spec.cred_type == VIXDISKLIB_CRED_UID;
  // From here on a failure must not leave the session behind on the server (the destructor
  // logs out).
  VIX_TRY(s->refresh_inventory());
  return s;
}

ServerSession::~ServerSession() {
  auto r = logout();
  if (!r.ok()) log::info("Disconnect: logout failed: " + r.error().message);
}

Result<void> ServerSession::logout() {
  {
    std::lock_guard lock(mu_);
    if (!logged_in_ || !client_) return ok();
    logged_in_ = false;
  }
  VIX_TRY(client_->logout());
  log::info("Disconnect: logged out of " + client_->endpoint());
  return ok();
}

std::shared_ptr<const vsphere::Inventory> ServerSession::inventory() const {
  std::lock_guard lock(mu_);
  return inventory_;
}

Result<std::shared_ptr<const vsphere::Inventory>> ServerSession::refresh_inventory() {
  VIX_ASSIGN_OR_RETURN(vsphere::Inventory read, client_->inventory());
  auto fresh = std::make_shared<const vsphere::Inventory>(std::move(read));
  std::lock_guard lock(mu_);
  inventory_ = fresh;
  return fresh;
}

Result<std::unique_ptr<RemoteSession>> RemoteSession::open(const ConnectSpec& spec,
                                                           const std::string& snapshot,
                                                           const Config& config) {
  std::unique_ptr<RemoteSession> s(new RemoteSession());
  if (spec.session) {
    s->server_ = spec.session;
  } else {
    VIX_ASSIGN_OR_RETURN(s->server_, ServerSession::login(spec, config));
    s->own_login_ = true;
  }
  s->inventory_ = s->server_->inventory();
  s->vm_ = vm_moref_from_vmx_spec(spec.vmx_spec);
  if (s->vm_.empty()) {
    if (!snapshot.empty()) {
      return fail(VIX_E_INVALID_ARG,
                  "snapshot " + snapshot + " given without a VM (vmxSpec \"moref=vm-NN\")");
    }
  } else {
    const vsphere::VirtualMachine* vm = s->inventory_->find_vm(s->vm_);
    if (vm == nullptr) {
      return fail(VIX_E_OBJECT_NOT_FOUND,
                  "virtual machine " + s->vm_ + " not found on " + spec.server);
    }
    if (!snapshot.empty() && vsphere::find_snapshot(vm->snapshots, snapshot) == nullptr) {
      return fail(VIX_E_OBJECT_NOT_FOUND, "snapshot " + snapshot +
                                              " not found on virtual machine " + s->vm_ + " (" +
                                              vm->name + ")");
    }
  }
  log::info(std::string(s->own_login_ ? "ConnectEx: logged in to "
                                      : "ConnectEx: using the session with ") +
            s->server_->endpoint() + (s->vm_.empty() ? std::string() : ", VM " + s->vm_) +
            (snapshot.empty() ? std::string() : ", snapshot " + snapshot));
  return s;
}

RemoteSession::~RemoteSession() = default;

Result<void> RemoteSession::logout() {
  return own_login_ ? server_->logout() : ok();
}

Result<DatastoreLocation> RemoteSession::locate(const std::string& datastore_path) const {
  auto parsed = vsphere::parse_datastore_path(datastore_path);
  if (!parsed || parsed->path.empty()) {
    return fail(VIX_E_INVALID_ARG, datastore_path +
                                       ": not a datastore path (expected \"[datastore] "
                                       "folder/disk.vmdk\")");
  }
  const vsphere::Datastore* ds = inventory_->find_datastore_by_name(parsed->datastore);
  if (ds == nullptr) {
    return fail(VIX_E_OBJECT_NOT_FOUND,
                datastore_path + ": datastore " + parsed->datastore + " not found");
  }
  const vsphere::Datacenter* dc = inventory_->find_datacenter(ds->datacenter);
  if (dc == nullptr) {
    return fail(VIX_E_OBJECT_NOT_FOUND,
                datastore_path + ": no datacenter lists datastore " + parsed->datastore);
  }
  return DatastoreLocation{parsed->datastore, parsed->path, dc->path, ds->url};
}

}  // namespace vix
