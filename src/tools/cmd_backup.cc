// vixdisk backup: a whole VM in one command. Snapshot (Storage vMotion blocked for the length of
// it), every disk of the snapshot copied sparse into DEST with its sha256, vMotion unblocked and
// the snapshot removed (also after a failed copy or SIGINT/SIGTERM), then the snapshot's metadata
// written beside the images as backup.json, the mark of a backup that ran to its end. The
// snapshot's description names this tool, host and process, so that `vixdisk cleanup` can tell a
// dead backup's snapshot from everyone else's, and undo what it left after a SIGKILL.
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>

#include "tools/cli.h"
#include "tools/disk_copy.h"
#include "vix/leftovers.h"
#include "vsphere/privileges.h"

namespace vixdisk {

namespace {

std::atomic<bool> g_stop{false};

void on_stop_signal(int) {
  g_stop = true;
}

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const uint8_t* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    static const char kDigits[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
      out += kDigits[md[i] >> 4];
      out += kDigits[md[i] & 15];
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

struct DiskCopy {
  std::string slot, file, transport, sha256;
  uint64_t capacity = 0, read_bytes = 0;
};

// The snapshot and the blocked method, undone in reverse order whatever way the backup ends.
//
// The order is what lets `vixdisk cleanup` undo a backup killed at any instant (SIGKILL runs no
// guard): cleanup finds a dead backup only by the snapshot whose description names it, and then
// removes that snapshot and enables RelocateVM_Task again for that backup's identity. So the
// snapshot is made BEFORE PrepareForAccess disables the method, and removed only AFTER EndAccess
// has enabled it again: at every instant at which the method is disabled for this process, a
// snapshot naming this process exists. Killed before the snapshot exists, there is nothing to
// undo; killed while CreateSnapshot_Task or DisableMethods is in flight (the server still carries
// it out), the snapshot is there for cleanup; killed after EndAccess, only the snapshot is left.
// For the same reason, when EndAccess fails the snapshot is kept: removing it would leave the
// method disabled with nothing to find it by.
class BackupGuard {
 public:
  BackupGuard(vix::ConnectSpec spec, vix::vsphere::Client& client, std::string identity)
      : spec_(std::move(spec)), client_(client), identity_(std::move(identity)) {}
  ~BackupGuard() { release(); }
  void access_prepared() { prepared_ = true; }
  void snapshot_made(const std::string& moref) { snapshot_ = moref; }
  // Returns whether everything was undone; failures are reported on stderr.
  bool release() {
    bool clean = true;
    if (prepared_) {
      if (auto r = vix::end_access(spec_, identity_); !r.ok()) {
        vix_error("EndAccess " + identity_ + " (snapshot " + snapshot_ +
                      " kept: vixdisk cleanup removes it and enables the method once this "
                      "process has ended)",
                  r.error());
        clean = false;
        snapshot_.clear();
      }
      prepared_ = false;
    }
    if (!snapshot_.empty()) {
      if (auto r = client_.remove_snapshot(snapshot_, false); !r.ok()) {
        vix_error("remove snapshot " + snapshot_ + " (vixdisk cleanup removes it later)",
                  r.error());
        clean = false;
      }
      snapshot_.clear();
    }
    return clean;
  }

 private:
  vix::ConnectSpec spec_;
  vix::vsphere::Client& client_;
  std::string identity_;
  bool prepared_ = false;
  std::string snapshot_;
};

// Copies one disk of the snapshot to DEST/<slot>.img (through <slot>.img.part, renamed once
// complete) and writes <slot>.img.sha256 in sha256sum's format.
int copy_one(vix::Connection& conn, const vix::vsphere::VirtualDisk& d, const std::string& dest,
             DiskCopy* out) {
  out->slot = d.slot_name();
  out->file = d.file_name();
  auto disk = conn.open(out->file, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  if (!disk.ok()) return vix_error("open " + out->file, disk.error());
  vix::Disk& dk = **disk;
  const vix::DiskInfo info = dk.info();
  out->capacity = info.capacity_sectors * vix::kSectorSize;
  out->transport = std::string(dk.transport_name());
  const std::string image = dest + "/" + out->slot + ".img", part = image + ".part";
  Sink sink;
  sink.name = part;
  sink.fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (sink.fd < 0) return io_error("open " + part, errno);
  sink.seekable = sink.sparse = true;
  Sha256 sha;
  CopyOptions copy;
  copy.end = out->capacity;
  copy.use_map = info.num_links <= 1;
  copy.label = out->file;
  copy.progress_label = out->slot;
  copy.observe = [&sha](const uint8_t* p, size_t n) { sha.update(p, n); };
  copy.cancel = &g_stop;
  CopyStats stats;
  int rc = copy_disk(dk, sink, copy, &stats);
  if (rc == kExitOk && !stats.cancelled &&
      ftruncate(sink.fd, static_cast<off_t>(out->capacity)) != 0) {
    rc = io_error("truncate " + part, errno);
  }
  if (rc == kExitOk && !stats.cancelled && fsync(sink.fd) != 0)
    rc = io_error("fsync " + part, errno);
  if (close(sink.fd) != 0 && rc == kExitOk) rc = io_error("close " + part, errno);
  if (rc != kExitOk || stats.cancelled) {
    unlink(part.c_str());
    return rc;
  }
  if (rename(part.c_str(), image.c_str()) != 0) return io_error("rename " + part, errno);
  out->read_bytes = stats.read_bytes;
  out->sha256 = sha.hex();
  FILE* f = fopen((image + ".sha256").c_str(), "we");
  if (!f) return io_error("open " + image + ".sha256", errno);
  fprintf(f, "%s  %s.img\n", out->sha256.c_str(), out->slot.c_str());
  if (fclose(f) != 0) return io_error("write " + image + ".sha256", errno);
  return kExitOk;
}

std::string metadata_json(const std::string& server, const vix::vsphere::VirtualMachine& vm,
                          const std::string& snapshot, const std::string& name,
                          const std::string& description, const std::string& started,
                          const std::vector<DiskCopy>& disks) {
  std::string j = "{\n  \"server\": " + json_string(server) +
                  ",\n  \"vm\": {\"moref\": " + json_string(vm.moref) +
                  ", \"name\": " + json_string(vm.name) + ", \"uuid\": " + json_string(vm.uuid) +
                  "},\n  \"snapshot\": {\"moref\": " + json_string(snapshot) +
                  ", \"name\": " + json_string(name) +
                  ", \"description\": " + json_string(description) +
                  "},\n  \"started\": " + json_string(started) +
                  ",\n  \"finished\": " + json_string(vix::utc_now()) + ",\n  \"disks\": [";
  for (size_t i = 0; i < disks.size(); ++i) {
    const DiskCopy& d = disks[i];
    j += std::string(i ? "," : "") + "\n    {\"slot\": " + json_string(d.slot) +
         ", \"image\": " + json_string(d.slot + ".img") + ", \"file\": " + json_string(d.file) +
         ", \"capacity\": " + std::to_string(d.capacity) +
         ", \"readBytes\": " + std::to_string(d.read_bytes) +
         ", \"transport\": " + json_string(d.transport) + ", \"sha256\": " + json_string(d.sha256) +
         "}";
  }
  return j + "\n  ]\n}\n";
}

}  // namespace

int cmd_backup(const std::vector<std::string>& args) {
  std::string error;
  std::vector<OptionSpec> options = server_option_specs();
  options.push_back({"quiesce", false, 0});
  options.push_back({"snapshot-name", true, 0});
  auto parsed = parse_args(args, options, &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 2) return usage_error("backup needs VM and DEST");
  vix::ConnectSpec spec;
  if (!server_spec(*parsed, &spec, &error)) return usage_error("backup " + error);
  const std::string wanted = parsed->positional[0], dest = parsed->positional[1];
  const std::string snap_name = parsed->get("snapshot-name", "vixdisk-backup");
  if (mkdir(dest.c_str(), 0700) != 0 && errno != EEXIST) return io_error("mkdir " + dest, errno);
  if (access((dest + "/backup.json").c_str(), F_OK) == 0) {
    return usage_error(dest + " already holds a backup (backup.json): give an empty folder");
  }

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  auto server = server_login(spec);
  if (!server.ok()) return vix_error("login " + spec.server, server.error());
  spec.session = *server;
  vix::vsphere::Client& client = (*server)->client();
  const vix::vsphere::VirtualMachine* vm = find_vm(*(*server)->inventory(), wanted, &error);
  if (!vm) return usage_error(error);
  const vix::vsphere::VirtualMachine target = *vm;
  spec.vmx_spec = "moref=" + target.moref;
  // Refused before anything is made, naming the privilege, rather than late and misleadingly.
  auto privileges = vix::vsphere::check_privileges(client, {target.moref});
  if (!privileges.ok()) return vix_error("privileges of " + target.moref, privileges.error());
  for (const char* op : {"snapshot", "read", "remove-snapshot"}) {
    if (auto r = privileges->check(op, target.moref); !r.ok())
      return vix_error("backup", r.error());
  }

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);

  const auto t0 = std::chrono::steady_clock::now();
  const std::string started = vix::utc_now();
  const vix::Maker me = vix::this_process("vixdisk backup");
  const std::string identity = vix::access_identity(me);
  BackupGuard guard(spec, client, identity);
  // The snapshot first, then PrepareForAccess: see BackupGuard for why this order.
  const std::string description = vix::snapshot_description(me, started);
  auto snap =
      client.create_snapshot(target.moref, snap_name, description, false, parsed->has("quiesce"));
  if (!snap.ok()) return vix_error("snapshot " + target.moref, snap.error());
  guard.snapshot_made(*snap);
  note("snapshot " + *snap + " of " + target.moref);
  if (auto r = vix::prepare_for_access(spec, identity); r.ok()) {
    guard.access_prepared();
  } else {
    // Without Global.DisableMethods the copy is still right; only a Storage vMotion could then
    // move the disks under it (and fail it).
    fprintf(stderr, "vixdisk: warning: Storage vMotion of %s not blocked: %s\n",
            target.moref.c_str(), r.error().message.c_str());
  }

  int rc = kExitOk;
  std::vector<DiskCopy> copies;
  auto disks = client.disks_of({"VirtualMachineSnapshot", *snap});
  if (!disks.ok()) rc = vix_error("disks of " + *snap, disks.error());
  // The connection checks the snapshot against the session's inventory.
  if (auto inv = (*server)->refresh_inventory(); rc == kExitOk && !inv.ok()) {
    rc = vix_error("inventory of " + spec.server, inv.error());
  }
  std::unique_ptr<vix::Connection> conn;
  if (rc == kExitOk && !g_stop) {
    auto c = vix::Connection::connect(spec, true, *snap, global_options(*parsed).transports);
    if (!c.ok()) {
      rc = vix_error("connect " + spec.server, c.error());
    } else {
      conn = std::move(c).value();
    }
  }
  for (size_t i = 0; rc == kExitOk && conn && i < disks->size() && !g_stop; ++i) {
    DiskCopy copy;
    rc = copy_one(*conn, (*disks)[i], dest, &copy);
    if (rc == kExitOk && !g_stop) copies.push_back(std::move(copy));
  }
  conn.reset();
  const bool clean = guard.release();
  const bool interrupted = g_stop.load();
  // backup.json last, once nothing of the backup is left on the server: a DEST without it holds
  // no finished backup (a killed one leaves images, never backup.json). Written under another
  // name and renamed, so that it is never seen half-written.
  if (rc == kExitOk && !interrupted) {
    const std::string meta =
        metadata_json(spec.server, target, *snap, snap_name, description, started, copies);
    const std::string json = dest + "/backup.json", part = json + ".part";
    FILE* f = fopen(part.c_str(), "we");
    if (!f || fputs(meta.c_str(), f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
      rc = io_error("write " + part, errno);
    }
    if (f && fclose(f) != 0 && rc == kExitOk) rc = io_error("write " + part, errno);
    if (rc == kExitOk && rename(part.c_str(), json.c_str()) != 0) {
      rc = io_error("rename " + part, errno);
    }
    if (rc != kExitOk) unlink(part.c_str());
  }
  // A removal that could not merge the delta disks leaves the VM running on them.
  bool consolidate = false;
  if (auto need = client.needing_consolidation({target.moref}); need.ok() && !need->empty()) {
    consolidate = true;
    fprintf(stderr,
            "vixdisk: warning: %s (%s) needs consolidation after the snapshot's removal: run "
            "vixdisk consolidate %s --server ...\n",
            target.name.c_str(), target.moref.c_str(), target.moref.c_str());
  }
  uint64_t capacity = 0, read = 0;
  for (const DiskCopy& d : copies) capacity += d.capacity, read += d.read_bytes;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char took[32];
  snprintf(took, sizeof took, "%.1f s", secs);
  std::string after =
      clean ? "snapshot " + *snap + " removed" : "snapshot " + *snap + " NOT removed (see above)";
  if (consolidate) after += "; the VM needs consolidation";
  if (interrupted) {
    fprintf(stderr, "vixdisk: backup of %s interrupted after %zu of %zu disks; %s\n",
            target.name.c_str(), copies.size(), disks.ok() ? disks->size() : size_t{0},
            after.c_str());
    return kExitInterrupted;
  }
  if (rc != kExitOk) {
    fprintf(stderr, "vixdisk: backup of %s failed; %s\n", target.name.c_str(), after.c_str());
    return rc;
  }
  printf("backup %s (%s): %zu disk%s, %s (%s read) to %s in %s; %s\n", target.name.c_str(),
         target.moref.c_str(), copies.size(), copies.size() == 1 ? "" : "s",
         human_size(capacity).c_str(), human_size(read).c_str(), dest.c_str(), took, after.c_str());
  return clean ? kExitOk : kExitVix;
}

}  // namespace vixdisk
