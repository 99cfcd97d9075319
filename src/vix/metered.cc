#include "vix/metered.h"

#include <algorithm>
#include <bit>
#include <chrono>

namespace vix {

namespace {

uint64_t now_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

void IoSnapshot::add(const IoSnapshot& o) {
  read_requests += o.read_requests;
  read_bytes += o.read_bytes;
  write_requests += o.write_requests;
  write_bytes += o.write_bytes;
  flushes += o.flushes;
  unmaps += o.unmaps;
  unmap_bytes += o.unmap_bytes;
  errors += o.errors;
  for (const auto& [name, count] : o.link) link[name] += count;
  p50_us = std::max(p50_us, o.p50_us);
  p90_us = std::max(p90_us, o.p90_us);
  p99_us = std::max(p99_us, o.p99_us);
  max_us = std::max(max_us, o.max_us);
}

void IoMeter::record_read(uint64_t bytes, uint64_t micros, bool ok) {
  read_requests_.fetch_add(1, std::memory_order_relaxed);
  if (!ok) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  read_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  // Bucket b holds latencies in [2^(b-1), 2^b) microseconds.
  const int b = std::min(kBuckets - 1, static_cast<int>(std::bit_width(micros)));
  latency_[static_cast<size_t>(b)].fetch_add(1, std::memory_order_relaxed);
  uint64_t seen = max_us_.load(std::memory_order_relaxed);
  while (micros > seen && !max_us_.compare_exchange_weak(seen, micros)) {
  }
}

void IoMeter::record_write(uint64_t bytes, bool ok) {
  write_requests_.fetch_add(1, std::memory_order_relaxed);
  if (ok) {
    write_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

void IoMeter::record_flush(bool ok) {
  flushes_.fetch_add(1, std::memory_order_relaxed);
  if (!ok) errors_.fetch_add(1, std::memory_order_relaxed);
}

void IoMeter::record_unmap(uint64_t bytes, bool ok) {
  unmaps_.fetch_add(1, std::memory_order_relaxed);
  if (ok) {
    unmap_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

IoSnapshot IoMeter::snapshot() const {
  IoSnapshot s;
  s.read_requests = read_requests_.load();
  s.read_bytes = read_bytes_.load();
  s.write_requests = write_requests_.load();
  s.write_bytes = write_bytes_.load();
  s.flushes = flushes_.load();
  s.unmaps = unmaps_.load();
  s.unmap_bytes = unmap_bytes_.load();
  s.errors = errors_.load();
  s.max_us = max_us_.load();
  std::array<uint64_t, kBuckets> counts{};
  uint64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) total += counts[i] = latency_[i].load();
  auto percentile = [&](uint64_t per_mille) -> uint64_t {
    if (total == 0) return 0;
    const uint64_t rank = (total * per_mille + 999) / 1000;  // 1-based
    uint64_t seen = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      seen += counts[i];
      if (seen >= rank)
        return std::min<uint64_t>(uint64_t{1} << i, std::max<uint64_t>(s.max_us, 1));
    }
    return s.max_us;
  };
  s.p50_us = percentile(500);
  s.p90_us = percentile(900);
  s.p99_us = percentile(990);
  return s;
}

Result<void> MeteredDevice::read(uint64_t sector, uint64_t count, uint8_t* buf) {
  const uint64_t t0 = now_us();
  Result<void> r = inner_->read(sector, count, buf);
  meter_.record_read(count * kSectorSize, now_us() - t0, r.ok());
  return r;
}

Result<bool> MeteredDevice::map_to_host(uint64_t sector, uint64_t count,
                                        std::vector<HostPiece>* out) {
  const uint64_t t0 = now_us();
  Result<bool> r = inner_->map_to_host(sector, count, out);
  if (!r.ok() || *r) meter_.record_read(count * kSectorSize, now_us() - t0, r.ok());
  return r;
}

Result<void> MeteredDevice::write(uint64_t sector, uint64_t count, const uint8_t* buf) {
  Result<void> r = inner_->write(sector, count, buf);
  meter_.record_write(count * kSectorSize, r.ok());
  return r;
}

Result<void> MeteredDevice::flush() {
  Result<void> r = inner_->flush();
  meter_.record_flush(r.ok());
  return r;
}

Result<void> MeteredDevice::unmap(uint64_t sector, uint64_t count) {
  Result<void> r = inner_->unmap(sector, count);
  // A device that cannot discard did no I/O: not a request, not an error of the transport.
  if ((!r.ok() && r.error().code == VIX_E_NOT_SUPPORTED) || count == 0) return r;
  meter_.record_unmap(count * kSectorSize, r.ok());
  return r;
}

}  // namespace vix
