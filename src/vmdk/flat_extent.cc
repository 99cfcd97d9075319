#include "vmdk/flat_extent.h"

#include <cstring>

namespace vix::vmdk {

namespace {

class FlatExtent final : public Extent {
 public:
  FlatExtent(std::unique_ptr<ByteSource> src, uint64_t sectors, uint64_t offset)
      : src_(std::move(src)), sectors_(sectors), offset_(offset) {}

  uint64_t sectors() const override { return sectors_; }

  Result<void> map(uint64_t sector, uint64_t count, std::vector<Run>& out) override {
    if (sector > sectors_ || count > sectors_ - sector)
      return fail(VIX_E_DISK_OUTOFRANGE, name() + ": request beyond the extent");
    if (count == 0) return ok();
    if (!src_) {
      out.push_back(Run{sector, count, RunKind::kZero, 0});
    } else {
      out.push_back(Run{sector, count, RunKind::kData, (offset_ + sector) * 512});
    }
    return ok();
  }

  Result<void> read_run(const Run& run, uint8_t* buf) override {
    uint64_t bytes = run.count * 512;
    if (!src_ || run.kind != RunKind::kData) {
      std::memset(buf, 0, bytes);
      return ok();
    }
    VIX_ASSIGN_OR_RETURN(size_t got, src_->pread(buf, bytes, run.host));
    if (got < bytes) std::memset(buf + got, 0, bytes - got);  // extent longer than its file
    return ok();
  }

  Result<bool> write_needs_below(uint64_t, uint64_t) override { return false; }

  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf,
                     const BelowReader&) override {
    VIX_TRY(check_writable());
    if (sector > sectors_ || count > sectors_ - sector)
      return fail(VIX_E_DISK_OUTOFRANGE, name() + ": write beyond the extent");
    VIX_TRY(src_->pwrite(buf, count * 512, (offset_ + sector) * 512));
    return ok();
  }

  Result<void> flush() override { return src_ ? src_->flush() : ok(); }

  Result<void> check_writable() const override {
    if (!src_) return fail(VIX_E_NOT_SUPPORTED, "ZERO extents cannot be written");
    if (!src_->writable()) return fail(VIX_E_FILE_READ_ONLY, src_->name() + ": opened read-only");
    return ok();
  }

  ByteSource* source() override { return src_.get(); }

 private:
  std::string name() const { return src_ ? src_->name() : std::string("ZERO extent"); }

  std::unique_ptr<ByteSource> src_;
  uint64_t sectors_;
  uint64_t offset_;
};

}  // namespace

std::unique_ptr<Extent> make_flat_extent(std::unique_ptr<ByteSource> src, uint64_t sectors,
                                         uint64_t offset_sectors) {
  return std::make_unique<FlatExtent>(std::move(src), sectors, offset_sectors);
}

}  // namespace vix::vmdk
