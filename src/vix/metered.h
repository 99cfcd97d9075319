// MeteredDevice: counts what reaches a transport (requests, bytes, errors, latency) for
// MOUNTPOINT/.vixfs/stats.json. Sits directly on the device a transport returned, under the
// read-ahead cache, so its numbers are the transport's, not the caller's.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/block_device.h"

namespace vix {

struct IoSnapshot {
  uint64_t read_requests = 0, read_bytes = 0;
  uint64_t write_requests = 0, write_bytes = 0;
  uint64_t flushes = 0, errors = 0;
  uint64_t unmaps = 0, unmap_bytes = 0;  // BlockDevice::unmap calls, bytes discarded
  BlockDevice::LinkCounters link;        // BlockDevice::link_counters() of the transport's device
  // Read latency in microseconds (upper bounds of log2 buckets: within 2x of the truth).
  uint64_t p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0;
  void add(const IoSnapshot& o);  // sums counts; percentiles keep the larger (an upper bound)
  uint64_t link_counter(const std::string& name) const {
    auto it = link.find(name);
    return it == link.end() ? 0 : it->second;
  }
};

class IoMeter {
 public:
  void record_read(uint64_t bytes, uint64_t micros, bool ok);
  void record_write(uint64_t bytes, bool ok);
  void record_flush(bool ok);
  void record_unmap(uint64_t bytes, bool ok);
  IoSnapshot snapshot() const;

 private:
  static constexpr int kBuckets = 40;  // 1 us .. ~2^39 us
  std::atomic<uint64_t> read_requests_{0}, read_bytes_{0}, write_requests_{0}, write_bytes_{0};
  std::atomic<uint64_t> flushes_{0}, errors_{0}, max_us_{0};
  std::atomic<uint64_t> unmaps_{0}, unmap_bytes_{0};
  std::array<std::atomic<uint64_t>, kBuckets> latency_{};
};

// Overrides the requests it counts; everything else passes through BlockDeviceWrapper.
class MeteredDevice final : public BlockDeviceWrapper {
 public:
  explicit MeteredDevice(std::unique_ptr<BlockDevice> inner)
      : BlockDeviceWrapper(std::move(inner)) {}
  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override;
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override;
  Result<void> flush() override;
  Result<void> unmap(uint64_t sector, uint64_t count) override;
  // Counted as a read of the mapped bytes: the caller reads them from the host file itself.
  Result<bool> map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) override;
  // The meter's counts plus the transport's link counters.
  IoSnapshot snapshot() const {
    IoSnapshot s = meter_.snapshot();
    s.link = inner_->link_counters();
    return s;
  }

 private:
  IoMeter meter_;
};

}  // namespace vix
