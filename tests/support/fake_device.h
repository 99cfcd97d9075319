// Test support: the one fake BlockDevice, for tests of what sits above a transport (the
// decorators, vix::Disk). Its bytes live in memory; every call is recorded; reads and writes can
// be made to fail (a sector range, or the Nth request), to take time, or to stop mid-flight.
// Thread-safe, as BlockDevice requires.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/block_device.h"

namespace vixtest {

// One per BlockDevice method: what FakeDevice records. A method added to BlockDevice gets an Op
// here and a case in FakeDevice, so that block_device_wrapper_test checks it reaches the device.
enum class Op {
  kCapacitySectors,
  kInfo,
  kReadOnly,
  kTransportName,
  kRead,
  kWrite,
  kFlush,
  kUnmap,
  kMapToHost,
  kAllocated,
  kLinkCounters,
  kProtocol,
  kMetadata,
  kWriteMetadata,
};
inline constexpr Op kAllOps[] = {
    Op::kCapacitySectors, Op::kInfo,     Op::kReadOnly, Op::kTransportName, Op::kRead,
    Op::kWrite,           Op::kFlush,    Op::kUnmap,    Op::kMapToHost,     Op::kAllocated,
    Op::kLinkCounters,    Op::kProtocol, Op::kMetadata, Op::kWriteMetadata};
const char* op_name(Op op);

// One recorded call; sector and count for the methods that take a range.
struct Call {
  Op op;
  uint64_t sector = 0;
  uint64_t count = 0;
};

class FakeDevice final : public vix::BlockDevice {
 public:
  // A disk of `bytes` zero bytes (a multiple of 512) that says it came from `transport`.
  explicit FakeDevice(uint64_t bytes, std::string transport = "fake");
  ~FakeDevice() override;

  // ---- contents (not recorded) ----
  // Byte i of the disk becomes fn(i).
  void fill(const std::function<uint8_t(uint64_t)>& fn);
  std::vector<uint8_t> bytes(uint64_t offset, uint64_t length) const;

  // ---- behaviour ----
  // What read_only() says; writes go through all the same (vix::Disk is what refuses them).
  void set_read_only(bool read_only);
  void set_reconnects(uint64_t n);
  // Off (the default): unmap fails with VIX_E_NOT_SUPPORTED, as a device without discard does.
  // On: the range reads back as zeros.
  void set_discard(bool can_discard);
  // 0 (the default): allocated() reports the whole range. Otherwise it reports the grains of
  // that many sectors that writes touched, as a sparse disk does.
  void set_allocation_grain(uint64_t sectors);
  // Runs when the device is destroyed (a decorator closing it, say).
  void on_destroy(std::function<void()> fn);

  // ---- faults, for the requests made after they are set ----
  // Reads (writes) that overlap [sector, sector+count) fail with `code` and `message`; a count
  // of 0 clears the fault.
  void fail_reads(uint64_t sector, uint64_t count, VixError code = VIX_E_DISK_INVAL,
                  std::string message = "injected failure");
  void fail_writes(uint64_t sector, uint64_t count, VixError code = VIX_E_DISK_INVAL,
                   std::string message = "injected failure");
  // The nth read (write) from now fails, once (1: the next one; 0 clears).
  void fail_nth_read(uint64_t n, VixError code = VIX_E_DISK_INVAL,
                     std::string message = "injected failure");
  void fail_nth_write(uint64_t n, VixError code = VIX_E_DISK_INVAL,
                      std::string message = "injected failure");
  // Every read and write takes this long more, before it does anything.
  void set_delay(std::chrono::microseconds delay);
  // Reads that overlap [sector, sector+count) copy their bytes, then wait until the range is
  // cleared (count 0): a read caught in flight, which returns the bytes from before whatever
  // happens meanwhile.
  void hold_reads(uint64_t sector, uint64_t count);
  // Waits until n reads in all have been held; false after 20 s, so that a bug fails the test
  // instead of hanging it.
  bool wait_held(int n);

  // ---- records ----
  uint64_t count(Op op) const;
  std::vector<Call> calls(Op op) const;
  void clear_calls();

  // ---- BlockDevice ----
  uint64_t capacity_sectors() const override;
  vix::DiskInfo info() const override;
  bool read_only() const override;
  std::string_view transport_name() const override;
  vix::Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override;
  vix::Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override;
  vix::Result<void> flush() override;
  vix::Result<void> unmap(uint64_t sector, uint64_t count) override;
  // Says it cannot map (false), as a network transport does; recorded all the same.
  vix::Result<bool> map_to_host(uint64_t sector, uint64_t count,
                                std::vector<vix::HostPiece>* out) override;
  vix::Result<std::vector<vix::SectorExtent>> allocated(uint64_t sector, uint64_t count) override;
  LinkCounters link_counters() const override;
  std::string protocol() const override;
  vix::Result<std::map<std::string, std::string>> metadata() override;
  vix::Result<void> write_metadata(const std::string& key, const std::string& value) override;

 private:
  struct RangeFault {
    uint64_t begin = 0, end = 0;  // sectors
    VixError code = VIX_E_DISK_INVAL;
    std::string message;
  };
  struct NthFault {
    uint64_t at = 0;  // request number that fails; 0: none
    VixError code = VIX_E_DISK_INVAL;
    std::string message;
  };

  void record(Op op, uint64_t sector = 0, uint64_t count = 0) const;
  // The fault a request of `seen` (1-based) over [sector, sector+count) meets, if any (mu_ held).
  static const std::string* fault(const RangeFault& range, const NthFault& nth, uint64_t seen,
                                  uint64_t sector, uint64_t count, VixError* code);
  vix::Result<void> check_range(const char* what, uint64_t sector, uint64_t count) const;

  const uint64_t capacity_;
  const std::string transport_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint8_t> data_;
  bool read_only_ = false;
  bool discard_ = false;
  uint64_t reconnects_ = 0;
  uint64_t grain_ = 0;
  std::set<uint64_t> grains_;
  std::map<std::string, std::string> metadata_;
  std::function<void()> on_destroy_;
  RangeFault read_range_, write_range_;
  NthFault read_nth_, write_nth_;
  uint64_t reads_seen_ = 0, writes_seen_ = 0;
  std::chrono::microseconds delay_{0};
  uint64_t hold_begin_ = 0, hold_end_ = 0;
  int held_ = 0;
  mutable std::vector<Call> calls_;
};

}  // namespace vixtest
