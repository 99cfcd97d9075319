// The opened VMDK: a chain of links (leaf first), each a descriptor plus extents laid end to
// end. Reads run in parallel under a shared lock; writes (leaf only) take it exclusively.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common/block_device.h"
#include "vmdk/descriptor.h"
#include "vmdk/extent.h"
#include "vmdk/sparse_extent.h"

namespace vix::vmdk {

struct Link {
  std::string path;  // the file the descriptor came from
  Descriptor desc;
  std::string create_type;  // what info() reports (qemu's rule for embedded descriptors)
  // Where the descriptor text lives: a separate file, or the embedded area of a sparse extent.
  std::unique_ptr<ByteSource> desc_src;
  SparseExtent* embedded = nullptr;  // owned by extents[0]
  std::vector<std::unique_ptr<Extent>> extents;
  std::vector<uint64_t> starts;  // starts[i] = first sector of extents[i]; back() = capacity
  uint64_t capacity = 0;
  std::atomic<bool> parent_checked{false};

  // Re-reads the descriptor text from where it lives.
  Result<std::string> read_descriptor_text();
  // Replaces the descriptor text in place (embedded: must fit; separate: padded, never shrunk).
  Result<void> write_descriptor_text(const std::string& text);
};

class VmdkDisk final : public BlockDevice {
 public:
  VmdkDisk(std::vector<std::unique_ptr<Link>> links, bool read_only, std::string transport)
      : links_(std::move(links)), read_only_(read_only), transport_(std::move(transport)) {}
  // A redo log over a disk opened elsewhere: holes of the last link read from `below`, which is
  // never written. No CID check is possible against it: the caller vouches for the pairing.
  VmdkDisk(std::vector<std::unique_ptr<Link>> links, std::unique_ptr<BlockDevice> below)
      : links_(std::move(links)),
        read_only_(false),
        transport_(below->transport_name()),
        below_(std::move(below)) {}

  uint64_t capacity_sectors() const override { return links_[0]->capacity; }
  DiskInfo info() const override;
  bool read_only() const override { return read_only_; }
  std::string_view transport_name() const override { return transport_; }

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override;
  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override;
  Result<void> flush() override;
  Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override;
  // Data grains and flat runs map to their extent files, zeros and holes without a parent to
  // zero pieces; false for compressed grains, non-local extent files, or a `below` device that
  // cannot map.
  Result<bool> map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) override;
  LinkCounters link_counters() const override {
    return below_ ? below_->link_counters() : LinkCounters{};
  }
  Result<std::map<std::string, std::string>> metadata() override;
  Result<void> write_metadata(const std::string& key, const std::string& value) override;

 private:
  Result<void> check_range(uint64_t sector, uint64_t count) const;
  Result<void> read_link(size_t li, uint64_t sector, uint64_t count, uint8_t* buf);
  Result<void> alloc_link(size_t li, uint64_t sector, uint64_t count,
                          std::vector<SectorExtent>& out);
  Result<void> check_parent(size_t li);
  // Reads [sector, sector+count) of what lies under link li: its parent link, else below_,
  // else zeros.
  Result<void> read_under(size_t li, uint64_t sector, uint64_t count, uint8_t* buf);
  // map_to_host of one link, the way read_link reads it; false as soon as a run cannot map.
  Result<bool> map_link(size_t li, uint64_t sector, uint64_t count, std::vector<HostPiece>* out);
  Result<void> rewrite_cid_once();

  std::vector<std::unique_ptr<Link>> links_;
  bool read_only_;
  std::string transport_;
  bool cid_rewritten_ = false;
  std::unique_ptr<BlockDevice> below_;
  mutable std::shared_mutex mu_;
};

}  // namespace vix::vmdk
