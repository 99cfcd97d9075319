// Test support: a vcsim instance for one test suite, a child of the test (support/process.h:
// stopped and reaped with the fixture, killed with the test binary) running the binary that
// `scripts/vcsim build` makes on first use; or the one named by $VIXFS_VCSIM_ENV (an env file
// written by `scripts/vcsim start`) when a suite needs no special flags. Never skipped silently:
// when it cannot start, `error` says why and the tests fail with it.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "support/process.h"
#include "vsphere/session.h"

namespace vix::vsphere {
class Client;
}

namespace vixtest {

class Simulator {
 public:
  // `args` go to the simulator as shell words (e.g. "-user u:p"); `share_env` allows using
  // $VIXFS_VCSIM_ENV.
  static std::unique_ptr<Simulator> start(const std::string& args, bool share_env,
                                          std::string* error);
  // Makes the sample VMs of scripts/sample-vms (disks of size_mib; the VMFS6 VM's SEsparse
  // deltas with this build's vixfs-make-sesparse) in `dir` and starts a simulator of its own
  // that serves them, with `args` besides -samples ("-user u:p -nfc").
  static std::unique_ptr<Simulator> start_with_samples(const std::string& dir, int size_mib,
                                                       const std::string& args, std::string* error);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // A KEY=VALUE line of the simulator's output ("" if absent), e.g. get("VCSIM_URL").
  std::string get(const std::string& key) const;
  const std::map<std::string, std::string>& vars() const { return vars_; }
  // The vixfs arguments that mount this simulator as folder "sim" for user (password in
  // password_file), its thumbprint pinned, through `transports` ("" for vixfs's default).
  std::vector<std::string> mount_args(const std::string& user, const std::string& password_file,
                                      const std::string& transports) const;
  // The file on the simulator's LocalDS_0 behind "[LocalDS_0] DIR/FILE" ("" for another form).
  std::string local_file(const std::string& datastore_path) const;
  // A ConnectSpec for this simulator as user/password, its thumbprint pinned, bound to the VM
  // whose moRef is vm ("" for none).
  vix::ConnectSpec connect_spec(const std::string& vm, const std::string& user = "u",
                                const std::string& password = "p") const;
  // Stops it now (idempotent); later connections are refused.
  void stop();
  // A vSphere client logged in as user/password, its thumbprint pinned; null with *error set.
  std::unique_ptr<vix::vsphere::Client> login(const std::string& user, const std::string& password,
                                              std::string* error) const;
  // Logs in as user/password, snapshots vm (no memory, not quiesced) and logs out: the
  // snapshot's moRef, or "" with *error set.
  std::string snapshot(const std::string& user, const std::string& password, const std::string& vm,
                       const std::string& name, const std::string& description,
                       std::string* error) const;

  // The NFC test server of a simulator started with -nfc (tests/vcsim/README.md): its folder
  // (VCSIM_NFC_DIR, "" without -nfc).
  std::string nfc_dir() const;
  // Replaces DIR/faults with `text` (key=value lines) atomically; the server reads it again at
  // the next connection or request. "" clears every fault.
  bool set_nfc_faults(const std::string& text, std::string* error) const;
  // SIGKILLs the NFC server (the pid in DIR/pid), as a crash would, and waits until its port
  // refuses connections.
  bool kill_nfc(std::string* error);
  // Starts `VCSIM_BIN nfc-serve -dir DIR` again on the same port, detached from the test: the
  // simulator stops it at exit (and it stops by itself when the simulator is gone). True once it
  // accepts connections.
  bool restart_nfc(std::string* error);
  // DIR/nfc.log: a line per connection, step, fault used and error.
  std::string nfc_log() const;

  // -host-https (tests/vcsim/host_https.go): DIR/host.log, a line per /folder request of the host
  // ("host GET /folder/... inflight=N STATUS") and of the vCenter ("vcenter HEAD ... STATUS"),
  // and per ticket ("ticket issued ...", "ticket refused"); "" without -host-https.
  std::string host_https_log() const;
  // Replaces DIR/faults with `text` atomically (read again at each request); "" clears them.
  bool set_host_https_faults(const std::string& text, std::string* error) const;

 private:
  Simulator() = default;
  std::string dir_;               // temp folder holding the env file and log (ours to remove)
  std::unique_ptr<Child> child_;  // null when shared or stopped
  std::map<std::string, std::string> vars_;
};

}  // namespace vixtest
