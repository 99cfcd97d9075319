// The privileges the tools' operations need, checked before any work
// (docs/reference/vsphere-backup.md §3): one HasPrivilegeOnEntities call covers every VM (and
// datastore) of interest plus the root folder, for the session's own key, so an operation that
// lacks a privilege can be refused at once with a message naming it, instead of failing late
// with vSphere's misleading "The host is not licensed for this feature".
#pragma once

#include <pugixml.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace vix::vsphere {

class Client;

// Where vSphere checks a privilege: the VM the operation works on (for `hotadd`, the proxy VM
// the disk is added to), the root folder (Global.*), or a datastore (space for hot-add).
enum class PrivilegeScope { kVm, kRoot, kDatastore };

struct PrivilegeNeed {
  const char* operation;  // read, write, download, snapshot, ... (privilege_needs() lists them)
  const char* privilege;  // the privilege ID, e.g. VirtualMachine.State.CreateSnapshot
  PrivilegeScope scope;
};

// The table: every {operation, privilege ID, scope} the tools know. Operations:
//   read             reading disks (VirtualMachine.Provisioning.DiskRandomRead)
//   write            writing disks, restore (DiskRandomAccess)
//   download         reading VM files over https or NFC file access (GetVmFiles)
//   snapshot         CreateSnapshot_Task
//   remove-snapshot  RemoveSnapshot_Task
//   consolidate      ConsolidateVMDisks_Task
//   change-tracking  enabling CBT
//   hotadd           adding a disk to the proxy VM (its config; space on the datastore)
//   disable-methods  PrepareForAccess (Global.DisableMethods on the root folder)
//   enable-methods   EndAccess (Global.EnableMethods on the root folder)
//   license          Global.Licenses, which backup vendors list (no operation of ours needs it)
const std::vector<PrivilegeNeed>& privilege_needs();
// The distinct operation names of privilege_needs(), in its order.
std::vector<std::string> privilege_operations();

// One privilege the session lacks for an operation.
struct MissingPrivilege {
  std::string operation;
  std::string privilege;
  std::string entity;  // moRef value: the VM, the root folder or the datastore
};

// "<operation> on <vm moRef>: missing privilege <ID> on <entity>": the refusal's text, the same in
// the log, in an error and in vixdisk's output.
std::string privilege_refusal(const std::string& operation, const std::string& vm,
                              const MissingPrivilege& missing);

// The server's answers, copyable. When the server could not answer (it does not know
// HasPrivilegeOnEntities: an older or partial implementation), the table is "unknown" and
// refuses nothing.
class PrivilegeTable {
 public:
  // The entity moRef value -> privilege -> granted, as the server answered.
  using Answers = std::map<std::string, std::map<std::string, bool>>;

  PrivilegeTable() = default;  // unknown, with no reason
  static PrivilegeTable unknown(std::string reason);
  PrivilegeTable(std::string root_folder, Answers answers);

  bool known() const { return known_; }
  // Why the table is unknown ("" when known).
  const std::string& unknown_reason() const { return reason_; }
  const std::string& root_folder() const { return root_; }
  const Answers& answers() const { return answers_; }

  // The privileges `operation` needs on `vm` (and `datastore`, for hot-add's space; skipped when
  // "") that the server said are not granted. Empty when everything is granted, when the table is
  // unknown, and for pairs the server did not answer (the VM was not checked, say): only a
  // privilege the server denied refuses. An operation the table does not list needs nothing.
  std::vector<MissingPrivilege> missing(const std::string& operation, const std::string& vm,
                                        const std::string& datastore = "") const;
  // The first of those as an error (VIX_E_AUTHENTICATION_FAIL, the text privilege_refusal
  // makes), or ok.
  Result<void> check(const std::string& operation, const std::string& vm,
                     const std::string& datastore = "") const;

  // What snapshot.json's VM part shows: {"checked":true,"missing":[{"operation":..,
  // "privilege":..,"entity":..},...]} for every operation on `vm` (its VM- and root-scoped
  // needs; not hotadd's, which are the proxy VM's), or {"checked":false,"reason":".."} when
  // unknown.
  std::string json(const std::string& vm) const;

 private:
  bool known_ = false;
  std::string reason_;
  std::string root_;
  Answers answers_;
};

// Upper bound on entities × privileges in one answer (a hostile server cannot make us hold more).
inline constexpr size_t kMaxPrivilegeAnswers = 1000000;

// Parses a HasPrivilegeOnEntitiesResponse element: returnval (EntityPrivilege) elements, each an
// `entity` moRef and `privAvailability` {privId, isGranted} elements. An entity the request did not
// name (`asked`), a missing field or a wrongly typed value is an error naming the field.
Result<PrivilegeTable> parse_privilege_answers(const pugi::xml_node& response,
                                               const std::string& root_folder,
                                               const std::vector<std::string>& asked);

// One HasPrivilegeOnEntities call for every need of privilege_needs() on each of `vms`, the root
// folder and each of `datastores`, with the session key from SessionManager.currentSession: three
// requests at most (service content, the session key, the check), whatever the number of VMs. A
// server that does not know the call (MethodNotFound, NotImplemented, ...) gives an unknown table;
// other failures (a dead session, hostile XML) are errors.
Result<PrivilegeTable> check_privileges(Client& client, const std::vector<std::string>& vms,
                                        const std::vector<std::string>& datastores = {});

}  // namespace vix::vsphere
