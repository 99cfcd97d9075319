#include "vix/leftovers.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <ctime>

#include "common/log.h"
#include "vsphere/method_access.h"

namespace vix {

namespace {

constexpr std::string_view kMadeBy = "Made by ";

std::string local_host() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

bool process_gone(long pid) {
  return pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string utc_now() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Maker this_process(const std::string& tool) {
  return Maker{tool, local_host(), static_cast<long>(getpid())};
}

std::string snapshot_description(const Maker& maker, const std::string& when) {
  return std::string(kMadeBy) + maker.tool + " on " + maker.host + ", pid " +
         std::to_string(maker.pid) + ", at " + when +
         "; removed when it ends, or by vixdisk cleanup once that process is gone";
}

std::optional<Maker> parse_snapshot_description(std::string_view d) {
  if (d.substr(0, kMadeBy.size()) != kMadeBy) return std::nullopt;
  d.remove_prefix(kMadeBy.size());
  const size_t on = d.find(" on "), pid = d.find(", pid ");
  if (on == std::string_view::npos || pid == std::string_view::npos || pid < on) {
    return std::nullopt;
  }
  Maker m;
  m.tool = std::string(d.substr(0, on));
  m.host = std::string(d.substr(on + 4, pid - on - 4));
  std::string_view rest = d.substr(pid + 6);
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), m.pid);
  if (ec != std::errc() || m.pid <= 0 || (m.tool != "vixfs" && m.tool != "vixdisk backup")) {
    return std::nullopt;
  }
  if (end == rest.data() + rest.size() || *end != ',') return std::nullopt;
  return m;
}

std::string access_identity(const Maker& maker) {
  return maker.tool + "/" + maker.host + "/" + std::to_string(maker.pid);
}

std::vector<Leftover> remove_dead_snapshots(vsphere::Client& client,
                                            const vsphere::Inventory& inventory, bool dry_run) {
  const std::string host = local_host();
  bool vcenter = false;
  if (auto sc = client.service_content(); sc.ok()) vcenter = sc->api_type == "VirtualCenter";
  std::vector<Leftover> out;
  for (const vsphere::VirtualMachine& vm : inventory.vms) {
    for (const vsphere::Snapshot* s : vsphere::flatten(vm.snapshots)) {
      auto maker = parse_snapshot_description(s->description);
      if (!maker || maker->host != host || !process_gone(maker->pid)) continue;
      Leftover l;
      l.vm = vm.moref;
      l.vm_name = vm.name;
      l.snapshot = s->moref;
      l.snapshot_name = s->name;
      l.maker = *maker;
      l.vcenter = vcenter;
      if (!dry_run) {
        if (auto r = client.remove_snapshot(s->moref, false); r.ok()) {
          l.removed = true;
          log::info("cleanup: removed snapshot " + s->moref + " ('" + s->name + "') of " +
                    vm.moref + ", left by " + maker->tool + " pid " + std::to_string(maker->pid));
        } else {
          l.error = r.error().message;
          log::warn("cleanup: snapshot " + s->moref + " of " + vm.moref + ": " + l.error);
        }
        // Whatever method that process disabled is enabled again (a no-op when it had none).
        if (vcenter) {
          auto e = vsphere::enable_methods(client, vm.moref, {vsphere::kRelocateMethod},
                                           access_identity(*maker));
          if (e.ok()) {
            l.enabled = true;
          } else {
            l.enable_error = e.error().message;
            log::warn("cleanup: EnableMethods on " + vm.moref + ": " + l.enable_error);
          }
        }
      }
      out.push_back(std::move(l));
    }
  }
  return out;
}

}  // namespace vix
