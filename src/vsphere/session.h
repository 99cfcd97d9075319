// The vSphere side of a remote connection: one logged-in session, the inventory as it was at
// ConnectEx, the VM and snapshot the connection is bound to, and the datastore-path resolution
// the remote transports share.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/config.h"
#include "common/result.h"
#include "vsphere/client.h"

namespace vix {

// What ConnectEx was given: where the disks are and how to log in. Local connections (no server)
// use only the config scope.
struct ConnectSpec {
  std::string vmx_spec;  // "moref=vm-42"; empty for local
  std::string server;    // empty for local
  std::string thumbprint;
  VixDiskLibCredType cred_type = VIXDISKLIB_CRED_UID;
  std::string user, password, cookie;
  uint32_t port = 0;
  uint32_t nfc_host_port = 0;  // accepted for GetConnectParams; VMware's NFC is not spoken
  std::string key;             // sessionId.key (VIXDISKLIB_CRED_SESSIONID)
  // A vixfs server section: the connection reads vixfs.server.<config_scope>.nbd.* and
  // .datastore.* in place of the global keys (Config::scoped). Empty for VDDK clients.
  std::string config_scope;
  bool is_local() const { return server.empty(); }
};

// Where a "[ds] dir/file.vmdk" lives.
struct DatastoreLocation {
  std::string datastore;  // name, as in the brackets
  std::string path;       // inside the datastore ("dir/file.vmdk")
  std::string dc_path;    // the datacenter's inventory path (the /folder dcPath)
  std::string url;        // the datastore's summary.url
};

class RemoteSession {
 public:
  // Logs in (password or session cookie), reads the inventory, checks the VM of `vmx_spec`
  // ("moref=vm-NN", may be empty) and the snapshot moRef (may be empty).
  static Result<std::unique_ptr<RemoteSession>> open(const ConnectSpec& spec,
                                                     const std::string& snapshot,
                                                     const Config& config);
  ~RemoteSession();  // logs out of a session it logged in (not of a borrowed cookie)

  Result<void> logout();
  Result<DatastoreLocation> locate(const std::string& datastore_path) const;
  std::string cookie() const { return client_->session_cookie(); }
  // For a transport whose requests were refused with `rejected`: the session's cookie, after
  // logging in again if it is still the refused one (not possible for a borrowed session).
  Result<std::string> renew_cookie(const std::string& rejected);
  std::string endpoint() const { return client_->endpoint(); }
  // TLS settings of the SOAP session, reused by the https transport.
  const vsphere::ConnectOptions& options() const { return options_; }
  const std::string& vm() const { return vm_; }
  vsphere::Client& client() { return *client_; }
  const vsphere::Inventory& inventory() const { return inventory_; }

 private:
  RemoteSession() = default;
  vsphere::ConnectOptions options_;
  std::unique_ptr<vsphere::Client> client_;
  vsphere::Inventory inventory_;
  std::string vm_;
  std::mutex logout_mu_;
  bool logged_in_ = false;  // a session of ours, to log out
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
