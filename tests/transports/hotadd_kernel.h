// The guest kernel's side of hot-add, for tests: a thread that watches the proxy VM's devices in
// the simulator and, when a disk it knows appears there, does what udev does on a real proxy —
// the disk's bytes become a block device (the image converted to raw by qemu-img, attached to a
// read-only loop device) linked as devRoot/scsi-3<uuid hex>. When the disk leaves the proxy, the
// link and the loop device go. Everything is torn down by the destructor.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "transports/hotadd.h"
#include "transports/loop_device.h"
#include "vsphere/client.h"

namespace vixtest {

class HotaddKernel {
 public:
  struct Disk {
    std::string uuid;       // backing uuid the library looks the device up by
    std::string image;      // the VMDK descriptor on the simulator's datastore
    bool writable = false;  // the loop device accepts writes (to the raw copy, not the image)
  };

  // Watches `proxy` through `client` (logged in); `disks` maps datastore path -> disk.
  HotaddKernel(std::unique_ptr<vix::vsphere::Client> client, std::string proxy,
               std::string dev_root, std::map<std::string, Disk> disks)
      : client_(std::move(client)),
        proxy_(std::move(proxy)),
        dev_root_(std::move(dev_root)),
        disks_(std::move(disks)) {
    std::filesystem::create_directories(dev_root_);
    thread_ = std::thread([this] { loop(); });
  }
  ~HotaddKernel() {
    stop_ = true;
    thread_.join();
    std::lock_guard lock(mu_);
    for (auto& [file, exposed] : exposed_) unexpose(exposed);
    exposed_.clear();
  }
  HotaddKernel(const HotaddKernel&) = delete;
  HotaddKernel& operator=(const HotaddKernel&) = delete;

  // What happened so far, in order: "attach <file>" / "detach <file>".
  std::vector<std::string> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  size_t exposed() {
    std::lock_guard lock(mu_);
    return exposed_.size();
  }
  std::string error() {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  struct Exposed {
    std::string link, raw;
    LoopDevice loop;
  };

  void unexpose(Exposed& e) {
    std::error_code ec;
    std::filesystem::remove(e.link, ec);
    e.loop.detach();
    std::filesystem::remove(e.raw, ec);
  }

  void loop() {
    while (!stop_) {
      auto devices = client_->devices_of(proxy_);
      if (!devices.ok()) {
        std::lock_guard lock(mu_);
        error_ = devices.error().message;
      } else {
        std::map<std::string, bool> present;
        for (const auto& d : *devices)
          if (d.is_disk() && disks_.count(d.file_name)) present[d.file_name] = true;
        std::lock_guard lock(mu_);
        for (const auto& [file, yes] : present) {
          if (exposed_.count(file)) continue;
          const Disk& disk = disks_.at(file);
          Exposed e;
          e.raw = dev_root_ + "/.raw-" + std::to_string(exposed_.size()) + "-" +
                  std::to_string(getpid()) + ".img";
          CommandResult r =
              run("qemu-img convert -q -O raw " + sh_quote(disk.image) + " " + sh_quote(e.raw));
          if (r.exit_code != 0) {
            error_ = "qemu-img convert " + disk.image + ": " + r.output;
            continue;
          }
          e.loop = LoopDevice::attach(e.raw, !disk.writable);
          if (!e.loop) {
            error_ = e.loop.error();
            continue;
          }
          e.link = dev_root_ + "/" + vix::hotadd::scsi_link_name(disk.uuid);
          std::error_code ec;
          std::filesystem::create_symlink(e.loop.path(), e.link, ec);
          if (ec) error_ = "symlink " + e.link + ": " + ec.message();
          events_.push_back("attach " + file);
          exposed_.emplace(file, std::move(e));
        }
        for (auto it = exposed_.begin(); it != exposed_.end();) {
          if (present.count(it->first)) {
            ++it;
            continue;
          }
          unexpose(it->second);
          events_.push_back("detach " + it->first);
          it = exposed_.erase(it);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  }

  std::unique_ptr<vix::vsphere::Client> client_;
  std::string proxy_, dev_root_;
  std::map<std::string, Disk> disks_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, Exposed> exposed_;
  std::vector<std::string> events_;
  std::string error_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace vixtest
