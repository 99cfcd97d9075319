// The hot-add journal: one entry per disk this library attached to a proxy VM, written (and
// fsync'd) before the ReconfigVM_Task and removed after the detach, so that a process killed in
// between leaves a record Cleanup can act on. Every read-modify-write holds an flock on a lock
// file beside the journal, so several processes on one proxy share it safely; the journal itself is
// replaced by rename, so a crash mid-write leaves the old or the new version, never a torn one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/result.h"

namespace vix::hotadd {

// A process as the journal records it: a pid alone may be reused, pid + start time may not.
struct ProcessId {
  pid_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks after boot)
  bool operator==(const ProcessId&) const = default;
};

ProcessId self_process();
// /proc/<pid>/stat field 22; an error when the process does not exist.
Result<uint64_t> process_start_time(pid_t pid);
// The process still runs (same pid, same start time). pid 0 is never alive: it marks an entry
// its owner gave up on (a failed detach) so that Cleanup retries it.
bool process_alive(const ProcessId& p);

struct JournalEntry {
  std::string id;          // unique: owner pid, start time and a sequence number
  std::string server;      // server_key() of the connection
  std::string proxy;       // proxy VM moRef
  int32_t device_key = 0;  // the attached disk's key; 0 until the attach completed
  int32_t controller_key = 0;
  int32_t unit = -1;
  std::string file;  // datastore path of the attached disk
  ProcessId owner;
};

// "host:port" (lower-case host, 443 when no port): one server however the connection names it
// ("vc", "vc:443", "https://vc/sdk").
std::string server_key(const std::string& server, uint32_t port);

// The folder the journal lives in: the config's tmpDirectory, else $TMPDIR, else /tmp.
std::string journal_dir(const Config& config);

class Journal {
 public:
  // The journal `vixfs-hotadd-<euid>.journal` in `dir` (created when missing).
  explicit Journal(std::string dir);
  const std::string& path() const { return path_; }

  Result<void> add(const JournalEntry& entry);  // fsync'd before it returns
  Result<void> set_device_key(const std::string& id, int32_t key);
  // Hands the entry over to no one (owner pid 0), so that the next Cleanup detaches it.
  Result<void> abandon(const std::string& id);
  Result<void> remove(const std::string& id);
  Result<std::vector<JournalEntry>> entries();
  // Reads the journal under the lock, lets `edit` change it, writes it back if `edit` says so.
  Result<void> transact(const std::function<Result<bool>(std::vector<JournalEntry>&)>& edit);

  // One text line per entry (tab-separated fields); exposed for tests of hostile journals.
  static std::string format(const std::vector<JournalEntry>& entries);
  static Result<std::vector<JournalEntry>> parse(const std::string& text,
                                                 const std::string& origin);

 private:
  std::string dir_, path_, lock_path_;
};

// A fresh entry id for an entry of this process.
std::string new_entry_id();

}  // namespace vix::hotadd
