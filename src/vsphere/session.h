// The vSphere side of a remote connection. ServerSession: one logged-in session with a server,
// owned by one VDDK connection (ConnectEx logs in) or shared by many (the mounted tree logs in
// once per server and every (VM, snapshot) connection uses that login, with one set of
// options). RemoteSession: what a connection sees of it: the inventory as it was at ConnectEx,
// the VM and snapshot it is bound to, and the datastore-path resolution the remote transports
// share.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/result.h"
#include "vsphere/client.h"

namespace vix {

class ServerSession;

// What ConnectEx was given: where the disks are and how to log in. Local connections (no server)
// use only the config scope.
struct ConnectSpec {
  std::string vmx_spec;  // "moref=vm-42"; empty for local
  std::string server;    // empty for local
  std::string thumbprint;
  VixDiskLibCredType cred_type = VIXDISKLIB_CRED_UID;
  std::string user, password, cookie;
  uint32_t port = 0;
  uint32_t nfc_host_port = 0;  // NFC: the port to use instead of the ticket's (0: the ticket's)
  std::string key;             // sessionId.key (VIXDISKLIB_CRED_SESSIONID)
  // A vixfs server section: the connection reads vixfs.server.<config_scope>.nbd.* and
  // .datastore.* in place of the global keys (Config::scoped). Empty for VDDK clients.
  std::string config_scope;
  // A session already logged in to this server: the connection uses it instead of logging in
  // (and leaves it logged in at Disconnect). Null for VDDK clients.
  std::shared_ptr<ServerSession> session;
  bool is_local() const { return server.empty(); }
};

// Where a "[ds] dir/file.vmdk" lives.
struct DatastoreLocation {
  std::string datastore;  // name, as in the brackets
  std::string path;       // inside the datastore ("dir/file.vmdk")
  std::string dc_path;    // the datacenter's inventory path (the /folder dcPath)
  std::string url;        // the datastore's summary.url
};

class ServerSession {
 public:
  // Logs in with spec's credentials (password or session cookie) and reads the inventory; TLS,
  // timeouts and response limits come from config (vixfs.tls.caFile, vixfs.soap.*).
  static Result<std::shared_ptr<ServerSession>> login(const ConnectSpec& spec,
                                                      const Config& config);
  ~ServerSession();  // logs out of a session it logged in (not of a borrowed cookie)
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  Result<void> logout();
  std::string cookie() const { return client_->session_cookie(); }
  // For a transport whose requests were refused with `rejected`: the session's cookie, after
  // logging in again if it is still the refused one (not possible for a borrowed session).
  Result<std::string> renew_cookie(const std::string& rejected);
  std::string endpoint() const { return client_->endpoint(); }
  // TLS settings of the SOAP session, reused by the https transport.
  const vsphere::ConnectOptions& options() const { return options_; }
  vsphere::Client& client() { return *client_; }
  // The inventory as last read (at login, or by refresh_inventory): a snapshot the caller may
  // keep while a refresh replaces it.
  std::shared_ptr<const vsphere::Inventory> inventory() const;
  Result<std::shared_ptr<const vsphere::Inventory>> refresh_inventory();

 private:
  ServerSession() = default;
  vsphere::ConnectOptions options_;
  std::unique_ptr<vsphere::Client> client_;
  mutable std::mutex mu_;  // guards inventory_ and logged_in_
  std::shared_ptr<const vsphere::Inventory> inventory_;
  bool logged_in_ = false;  // a session of ours, to log out
};

class RemoteSession {
 public:
  // Binds to spec.session when set, else logs in (a session of its own); then checks the VM of
  // `vmx_spec` ("moref=vm-NN", may be empty) and the snapshot moRef (may be empty) against the
  // inventory.
  static Result<std::unique_ptr<RemoteSession>> open(const ConnectSpec& spec,
                                                     const std::string& snapshot,
                                                     const Config& config);
  ~RemoteSession();  // logs out of a session of its own

  // Logs out of a session of its own; a shared one stays logged in for the others.
  Result<void> logout();
  Result<DatastoreLocation> locate(const std::string& datastore_path) const;
  std::string cookie() const { return server_->cookie(); }
  Result<std::string> renew_cookie(const std::string& rejected) {
    return server_->renew_cookie(rejected);
  }
  std::string endpoint() const { return server_->endpoint(); }
  const vsphere::ConnectOptions& options() const { return server_->options(); }
  const std::string& vm() const { return vm_; }
  vsphere::Client& client() { return server_->client(); }
  // The inventory as it was when this connection was made.
  const vsphere::Inventory& inventory() const { return *inventory_; }

 private:
  RemoteSession() = default;
  std::shared_ptr<ServerSession> server_;
  bool own_login_ = false;
  std::shared_ptr<const vsphere::Inventory> inventory_;
  std::string vm_;
};

// vixfs.soap.timeoutMs (default 120000): how long one SOAP or https request may take.
Result<long> soap_timeout_ms(const Config& config);

// Declared here rather than in session.cc: the daemon's own login (src/fs) reads it too.
inline constexpr TextKey kTlsCaFile{"vixfs.tls.caFile", "",
                                    "PEM CA certificates that vouch for vCenter/ESXi"};
// The keys session.cc reads (the registry: vix::config_registry()).
KeyList session_config_keys();

// "moref=vm-42" (other key=value pairs separated by '/' or ';' are ignored) -> "vm-42".
std::string vm_moref_from_vmx_spec(const std::string& vmx_spec);

}  // namespace vix
