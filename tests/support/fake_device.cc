#include "support/fake_device.h"

#include <algorithm>
#include <cstring>
#include <thread>

namespace vixtest {

using namespace std::chrono_literals;

const char* op_name(Op op) {
  switch (op) {
    case Op::kCapacitySectors:
      return "capacity_sectors";
    case Op::kInfo:
      return "info";
    case Op::kReadOnly:
      return "read_only";
    case Op::kTransportName:
      return "transport_name";
    case Op::kRead:
      return "read";
    case Op::kWrite:
      return "write";
    case Op::kFlush:
      return "flush";
    case Op::kUnmap:
      return "unmap";
    case Op::kMapToHost:
      return "map_to_host";
    case Op::kAllocated:
      return "allocated";
    case Op::kLinkCounters:
      return "link_counters";
    case Op::kProtocol:
      return "protocol";
    case Op::kMetadata:
      return "metadata";
    case Op::kWriteMetadata:
      return "write_metadata";
  }
  return "?";
}

FakeDevice::FakeDevice(uint64_t bytes, std::string transport)
    : capacity_(bytes / vix::kSectorSize), transport_(std::move(transport)), data_(bytes) {}

FakeDevice::~FakeDevice() {
  if (on_destroy_) on_destroy_();
}

void FakeDevice::fill(const std::function<uint8_t(uint64_t)>& fn) {
  std::lock_guard lock(mu_);
  for (uint64_t i = 0; i < data_.size(); ++i) data_[i] = fn(i);
}

std::vector<uint8_t> FakeDevice::bytes(uint64_t offset, uint64_t length) const {
  std::lock_guard lock(mu_);
  const uint64_t b = std::min<uint64_t>(offset, data_.size());
  const uint64_t e = std::min<uint64_t>(b + length, data_.size());
  return std::vector<uint8_t>(data_.begin() + static_cast<std::ptrdiff_t>(b),
                              data_.begin() + static_cast<std::ptrdiff_t>(e));
}

void FakeDevice::set_read_only(bool read_only) {
  std::lock_guard lock(mu_);
  read_only_ = read_only;
}

void FakeDevice::set_reconnects(uint64_t n) {
  std::lock_guard lock(mu_);
  reconnects_ = n;
}

void FakeDevice::set_discard(bool can_discard) {
  std::lock_guard lock(mu_);
  discard_ = can_discard;
}

void FakeDevice::set_allocation_grain(uint64_t sectors) {
  std::lock_guard lock(mu_);
  grain_ = sectors;
  grains_.clear();
}

void FakeDevice::on_destroy(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  on_destroy_ = std::move(fn);
}

void FakeDevice::fail_reads(uint64_t sector, uint64_t count, VixError code, std::string message) {
  std::lock_guard lock(mu_);
  read_range_ = {sector, sector + count, code, std::move(message)};
}

void FakeDevice::fail_writes(uint64_t sector, uint64_t count, VixError code, std::string message) {
  std::lock_guard lock(mu_);
  write_range_ = {sector, sector + count, code, std::move(message)};
}

void FakeDevice::fail_nth_read(uint64_t n, VixError code, std::string message) {
  std::lock_guard lock(mu_);
  read_nth_ = {n == 0 ? 0 : reads_seen_ + n, code, std::move(message)};
}

void FakeDevice::fail_nth_write(uint64_t n, VixError code, std::string message) {
  std::lock_guard lock(mu_);
  write_nth_ = {n == 0 ? 0 : writes_seen_ + n, code, std::move(message)};
}

void FakeDevice::set_delay(std::chrono::microseconds delay) {
  std::lock_guard lock(mu_);
  delay_ = delay;
}

void FakeDevice::hold_reads(uint64_t sector, uint64_t count) {
  std::lock_guard lock(mu_);
  hold_begin_ = count == 0 ? 0 : sector;
  hold_end_ = count == 0 ? 0 : sector + count;
  cv_.notify_all();
}

bool FakeDevice::wait_held(int n) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, 20s, [&] { return held_ >= n; });
}

uint64_t FakeDevice::count(Op op) const {
  std::lock_guard lock(mu_);
  return static_cast<uint64_t>(
      std::count_if(calls_.begin(), calls_.end(), [&](const Call& c) { return c.op == op; }));
}

std::vector<Call> FakeDevice::calls(Op op) const {
  std::lock_guard lock(mu_);
  std::vector<Call> out;
  for (const Call& c : calls_)
    if (c.op == op) out.push_back(c);
  return out;
}

void FakeDevice::clear_calls() {
  std::lock_guard lock(mu_);
  calls_.clear();
}

void FakeDevice::record(Op op, uint64_t sector, uint64_t count) const {
  std::lock_guard lock(mu_);
  calls_.push_back({op, sector, count});
}

const std::string* FakeDevice::fault(const RangeFault& range, const NthFault& nth, uint64_t seen,
                                     uint64_t sector, uint64_t count, VixError* code) {
  if (nth.at != 0 && seen == nth.at) {
    *code = nth.code;
    return &nth.message;
  }
  if (count != 0 && sector < range.end && sector + count > range.begin) {
    *code = range.code;
    return &range.message;
  }
  return nullptr;
}

vix::Result<void> FakeDevice::check_range(const char* what, uint64_t sector, uint64_t count) const {
  if (sector > capacity_ || count > capacity_ - sector) {
    return vix::fail(VIX_E_DISK_OUTOFRANGE, std::string("fake device: ") + what + " of " +
                                                std::to_string(count) + " sectors at " +
                                                std::to_string(sector) + " past its end");
  }
  return vix::ok();
}

uint64_t FakeDevice::capacity_sectors() const {
  record(Op::kCapacitySectors);
  return capacity_;
}

vix::DiskInfo FakeDevice::info() const {
  record(Op::kInfo);
  vix::DiskInfo d;
  d.capacity_sectors = capacity_;
  return d;
}

bool FakeDevice::read_only() const {
  record(Op::kReadOnly);
  std::lock_guard lock(mu_);
  return read_only_;
}

std::string_view FakeDevice::transport_name() const {
  record(Op::kTransportName);
  return transport_;
}

vix::Result<void> FakeDevice::read(uint64_t sector, uint64_t count, uint8_t* buf) {
  record(Op::kRead, sector, count);
  VIX_TRY(check_range("read", sector, count));
  std::chrono::microseconds delay;
  {
    std::lock_guard lock(mu_);
    delay = delay_;
  }
  if (delay.count() != 0) std::this_thread::sleep_for(delay);
  std::unique_lock lock(mu_);
  VixError code = VIX_OK;
  if (const std::string* why = fault(read_range_, read_nth_, ++reads_seen_, sector, count, &code))
    return vix::fail(code, *why);
  std::memcpy(buf, data_.data() + sector * vix::kSectorSize, count * vix::kSectorSize);
  if (count != 0 && sector < hold_end_ && sector + count > hold_begin_) {
    ++held_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return hold_end_ == 0; });
  }
  return vix::ok();
}

vix::Result<void> FakeDevice::write(uint64_t sector, uint64_t count, const uint8_t* buf) {
  record(Op::kWrite, sector, count);
  VIX_TRY(check_range("write", sector, count));
  std::chrono::microseconds delay;
  {
    std::lock_guard lock(mu_);
    delay = delay_;
  }
  if (delay.count() != 0) std::this_thread::sleep_for(delay);
  std::lock_guard lock(mu_);
  VixError code = VIX_OK;
  if (const std::string* why =
          fault(write_range_, write_nth_, ++writes_seen_, sector, count, &code))
    return vix::fail(code, *why);
  std::memcpy(data_.data() + sector * vix::kSectorSize, buf, count * vix::kSectorSize);
  if (grain_ != 0 && count != 0) {
    for (uint64_t g = sector / grain_; g <= (sector + count - 1) / grain_; ++g) grains_.insert(g);
  }
  return vix::ok();
}

vix::Result<void> FakeDevice::flush() {
  record(Op::kFlush);
  return vix::ok();
}

vix::Result<void> FakeDevice::unmap(uint64_t sector, uint64_t count) {
  record(Op::kUnmap, sector, count);
  VIX_TRY(check_range("unmap", sector, count));
  std::lock_guard lock(mu_);
  if (!discard_) return vix::fail(VIX_E_NOT_SUPPORTED, "fake device: cannot discard");
  // The grains stay allocated: a discard that only zeroes is what NBD_CMD_WRITE_ZEROES may do.
  std::memset(data_.data() + sector * vix::kSectorSize, 0, count * vix::kSectorSize);
  return vix::ok();
}

vix::Result<bool> FakeDevice::map_to_host(uint64_t sector, uint64_t count,
                                          std::vector<vix::HostPiece>* out) {
  (void)out;
  record(Op::kMapToHost, sector, count);
  return false;
}

vix::Result<std::vector<vix::SectorExtent>> FakeDevice::allocated(uint64_t sector, uint64_t count) {
  record(Op::kAllocated, sector, count);
  VIX_TRY(check_range("allocated", sector, count));
  std::lock_guard lock(mu_);
  std::vector<vix::SectorExtent> out;
  if (grain_ == 0) {
    if (count != 0) out.push_back({sector, count});
    return out;
  }
  for (uint64_t g : grains_) {
    const uint64_t s = std::max(g * grain_, sector);
    const uint64_t e = std::min(g * grain_ + grain_, sector + count);
    if (s < e) out.push_back({s, e - s});
  }
  return out;
}

vix::BlockDevice::LinkCounters FakeDevice::link_counters() const {
  record(Op::kLinkCounters);
  std::lock_guard lock(mu_);
  return {{"reconnects", reconnects_}};
}

std::string FakeDevice::protocol() const {
  record(Op::kProtocol);
  return "fake";
}

vix::Result<std::map<std::string, std::string>> FakeDevice::metadata() {
  record(Op::kMetadata);
  std::lock_guard lock(mu_);
  return metadata_;
}

vix::Result<void> FakeDevice::write_metadata(const std::string& key, const std::string& value) {
  record(Op::kWriteMetadata);
  std::lock_guard lock(mu_);
  metadata_[key] = value;
  return vix::ok();
}

}  // namespace vixtest
