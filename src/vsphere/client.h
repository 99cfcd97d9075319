// vSphere Web Services client: session (Login / session-cookie reuse / Logout, one automatic
// re-login on NotAuthenticated), inventory in a constant number of round trips, and tasks.
//
// Errors (vix::Error codes):
//   InvalidLogin, NoPermission              -> VIX_E_AUTHENTICATION_FAIL
//   NotAuthenticated (after one re-login)   -> VIX_E_HOST_NOT_CONNECTED
//   ManagedObjectNotFound                   -> VIX_E_OBJECT_NOT_FOUND
//   FileNotFound / FileFault                -> VIX_E_FILE_NOT_FOUND / VIX_E_FILE_ERROR
//   InvalidProperty, InvalidRequest, MethodNotFound -> VIX_E_NOT_SUPPORTED
//   connection refused / name unknown / connection lost or timed out
//        -> VIX_E_HOST_NETWORK_CONN_REFUSED / VIX_E_HOST_SERVER_NOT_FOUND /
//        VIX_E_HOST_TCP_CONN_LOST
//   TLS failures, thumbprint mismatch (message shows the presented SHA-1 and SHA-256),
//   unexpected HTTP status                  -> VIX_E_CANNOT_CONNECT_TO_HOST
//   malformed / hostile / wrongly typed XML -> VIX_E_INVALID_XML
//   response over the size limit            -> VIX_E_FILE_TOO_BIG
// The message always names the method, the fault type and the faultstring.
//
// Thread-safe: calls from several threads are serialised on one keep-alive connection.
#pragma once

#include <pugixml.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "vsphere/http.h"
#include "vsphere/inventory.h"
#include "vsphere/soap.h"

namespace vix::vsphere {

struct ServiceContent {
  std::string root_folder;
  std::string property_collector;
  std::string view_manager;
  std::string session_manager;
  std::string authorization_manager;
  std::string api_version;  // about.apiVersion, e.g. "6.5"
  std::string api_type;     // VirtualCenter or HostAgent
  std::string full_name;
  std::string instance_uuid;
};

// One `objects` element of a RetrievePropertiesEx result.
struct ObjectContent {
  MoRef obj;
  std::vector<std::pair<std::string, pugi::xml_node>> props;  // propSet name -> val
  std::vector<std::pair<std::string, std::string>> missing;   // path -> fault type
  pugi::xml_node find(std::string_view name) const;
};

struct TaskOutcome {
  std::string state;   // success
  std::string result;  // info.result as text (a moRef value for CreateSnapshot_Task), "" if none
};

// One device of a VM's config.hardware.device, as hot-add needs it: disks with their backing,
// controllers with their bus and own unit, every other device with the unit it occupies.
struct VmDevice {
  std::string type;  // xsi type: VirtualDisk, ParaVirtualSCSIController, VirtualCdrom, ...
  int32_t key = 0;
  int32_t controller_key = -1;  // -1 when the device sits on no controller
  int32_t unit = -1;
  // Controllers only: busNumber, and scsiCtlrUnitNumber (the unit a SCSI controller reserves).
  int32_t bus = -1;
  int32_t scsi_ctlr_unit = -1;
  // Disks only.
  std::string file_name, disk_mode, uuid, backing_type;
  bool is_disk() const { return type == "VirtualDisk"; }
  bool is_scsi_controller() const;
};

// An existing disk file to add to a VM (ReconfigVM_Task add, no fileOperation).
struct DiskAttachSpec {
  std::string file_name;  // "[ds] dir/disk.vmdk"
  std::string disk_mode;  // independent_nonpersistent, independent_persistent
  int32_t controller_key = 0;
  int32_t unit = 0;
};

class Client {
 public:
  // Over libcurl (TLS verified as ConnectOptions says).
  static Result<std::unique_ptr<Client>> connect(const ConnectOptions& options);
  // Over any transport (unit tests use canned responses).
  explicit Client(std::unique_ptr<Transport> transport);
  ~Client();

  Result<ServiceContent> service_content();
  Result<void> login(const std::string& user, const std::string& password);
  // Reuses a session another process logged in (VIXDISKLIB_CRED_SESSIONID): checks it is alive.
  Result<void> login_with_session(const std::string& cookie);
  // Ends the session; afterwards no call re-logs in.
  Result<void> logout();
  // The vmware_soap_session cookie value, verbatim ("" when not logged in).
  std::string session_cookie() const;
  // The current cookie; when it is still `rejected` (a transport's request was refused with
  // it), logs in again first. A borrowed session (login_with_session) cannot be renewed:
  // VIX_E_HOST_NOT_CONNECTED.
  Result<std::string> renew_session(const std::string& rejected);
  // The session key of the current session (UserSession.key), "" if unknown.
  Result<std::string> current_session_key();
  // Keys of every session the server holds (SessionManager.sessionList).
  Result<std::vector<std::string>> session_keys();
  std::string endpoint() const;

  // The whole inventory: VMs with snapshot trees and each snapshot's disks, datacenters (with
  // their inventory paths), datastores and hosts. Two RetrievePropertiesEx calls (plus paging) and
  // one view created and destroyed, whatever the number of objects.
  Result<Inventory> inventory();
  // Disks of one snapshot (or of a VM, when `moref` is a VirtualMachine's).
  Result<std::vector<VirtualDisk>> disks_of(const MoRef& moref);

  // RetrievePropertiesEx for a raw specSet, following ContinueRetrievePropertiesEx tokens; the
  // visitor sees each object while its document is alive.
  Result<void> retrieve(const std::string& spec_set_xml,
                        const std::function<Result<void>(const ObjectContent&)>& visit);

  // Polls a task with back-off (20 ms doubling to 1 s) until success or error, or `timeout`.
  Result<TaskOutcome> wait_for_task(const std::string& task,
                                    std::chrono::milliseconds timeout = std::chrono::minutes(30));
  Result<std::string> create_snapshot(const std::string& vm, const std::string& name,
                                      const std::string& description, bool memory, bool quiesce);
  Result<void> remove_snapshot(const std::string& snapshot, bool remove_children);
  Result<void> power_off(const std::string& vm);
  // ConsolidateVMDisks_Task: merges the delta disks a failed snapshot removal left.
  Result<void> consolidate_disks(const std::string& vm);
  // runtime.consolidationNeeded of each VM in `vms` (one request); VMs that do not report it
  // count as not needing it.
  Result<std::vector<std::string>> needing_consolidation(const std::vector<std::string>& vms);
  // ReconfigVM_Task setting config.changeTrackingEnabled; it takes effect at the VM's next stun
  // (power on, snapshot create or remove).
  Result<void> set_change_tracking(const std::string& vm, bool enabled);
  // Destroy_Task: the VM and its files go (it must be powered off).
  Result<void> destroy_vm(const std::string& vm);

  // Hot-add (client_devices.cc). The devices of a VM (at most kMaxDevices).
  static constexpr size_t kMaxDevices = 4096;
  Result<std::vector<VmDevice>> devices_of(const std::string& vm);
  // Adds an existing disk file to `vm`; the file is neither created nor copied.
  Result<void> attach_disk(const std::string& vm, const DiskAttachSpec& disk);
  // Removes a disk device from `vm` without fileOperation: the file stays on the datastore.
  Result<void> detach_disk(const std::string& vm, const VmDevice& disk);

  // One SOAP call: `method_body` is the inner XML of the method element (after _this). Retries
  // once after re-login on NotAuthenticated.
  Result<SoapResponse> call(const std::string& method, const MoRef& this_ref,
                            const std::string& method_body);
  // The same for the methods vSphere keeps out of its public WSDL (DisableMethods,
  // EnableMethods): namespace and SOAPAction urn:internalvim25.
  Result<SoapResponse> call_internal(const std::string& method, const MoRef& this_ref,
                                     const std::string& method_body);

 private:
  void forget_credentials();
  // Calls a *_Task method and waits for the task.
  Result<void> run_task(const std::string& method, const MoRef& this_ref, const std::string& body);
  Result<SoapResponse> call_once(const std::string& method, const MoRef& this_ref,
                                 const std::string& method_body, SoapFault* fault,
                                 bool internal = false);
  Result<SoapResponse> call_with_relogin(const std::string& method, const MoRef& this_ref,
                                         const std::string& method_body, bool internal);
  Result<void> relogin(uint64_t failed_generation);
  Result<void> do_login(const std::string& user, const std::string& password);
  std::string soap_action(bool internal = false) const;

  std::unique_ptr<Transport> transport_;
  mutable std::mutex mu_;  // guards the fields below
  std::unique_ptr<ServiceContent> sc_;
  std::string user_, password_;  // kept for re-login; cleared by logout
  bool can_relogin_ = false;
  uint64_t generation_ = 0;  // bumped by every login
  std::mutex login_mu_;      // one re-login at a time
};

}  // namespace vix::vsphere
