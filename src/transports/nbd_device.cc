// NbdDevice: the BlockDevice of the nbd and nbdssl transports, over a pool of NBD connections
// (nbd_pool.h: slots, reconnects within the request budget, pieces over the connections). Here:
// what each BlockDevice call asks of the server (alignment to its minimum block, discard as
// WRITE_ZEROES, FUA, the allocation map from BLOCK_STATUS), and opening the export.
#include <algorithm>
#include <map>
#include <mutex>
#include <optional>

#include "common/log.h"
#include "transports/nbd.h"
#include "transports/nbd_pool.h"

namespace vix {

namespace {

// One BLOCK_STATUS request covers at most this much (its length field is 32 bits).
constexpr uint64_t kMaxStatusSpan = 1ull << 30;

class NbdDevice final : public BlockDevice {
 public:
  NbdDevice(NbdSettings s, std::vector<NbdConnPtr> conns) : pool_(std::move(s), std::move(conns)) {}

  uint64_t capacity_sectors() const override { return info_.size / kSectorSize; }
  bool read_only() const override { return s_.read_only || info_.read_only(); }
  LinkCounters link_counters() const override { return {{"reconnects", pool_.reconnects()}}; }
  std::string protocol() const override { return "nbd"; }
  std::string_view transport_name() const override { return s_.tls ? "nbdssl" : "nbd"; }

  DiskInfo info() const override {
    DiskInfo d;
    d.capacity_sectors = capacity_sectors();
    // An export has no geometry; the usual 255/63 translation, as VMware reports for large disks.
    Geometry g;
    g.heads = 255;
    g.sectors = 63;
    g.cylinders =
        static_cast<uint32_t>(std::clamp<uint64_t>(d.capacity_sectors / (255 * 63), 1, UINT32_MAX));
    d.bios_geometry = g;
    d.phys_geometry = g;
    d.create_type = "nbd";
    return d;
  }

  Result<void> read(uint64_t sector, uint64_t count, uint8_t* buf) override {
    VIX_TRY(check_range(sector, count));
    const uint64_t off = sector * kSectorSize, end = off + count * kSectorSize;
    const uint64_t mb = info_.min_block;
    if (mb <= kSectorSize || count == 0) return read_direct(off, end - off, buf);
    // The server wants requests aligned to its minimum block: the partial blocks at either end
    // go through a bounce buffer, the aligned middle straight into the caller's buffer.
    const uint64_t a_start = (off + mb - 1) / mb * mb;
    const uint64_t a_end = end == info_.size ? end : end / mb * mb;
    if (a_start >= a_end) return read_bounced(off, end, buf);
    if (off < a_start) VIX_TRY(read_bounced(off, a_start, buf));
    VIX_TRY(read_direct(a_start, a_end - a_start, buf + (a_start - off)));
    if (a_end < end) VIX_TRY(read_bounced(a_end, end, buf + (a_end - off)));
    return ok();
  }

  Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf) override {
    if (read_only()) {
      return fail(VIX_E_FILE_READ_ONLY, pool_.where() + ": the disk is open read-only" +
                                            (info_.read_only() ? " (read-only export)" : ""));
    }
    VIX_TRY(check_range(sector, count));
    // A disk opened UNBUFFERED is write-through: each write carries FUA (or, on a server
    // without it, is followed by a FLUSH of its connection), so it is durable on return.
    // Otherwise durability is Flush's job.
    return pool_.spread(sector * kSectorSize, count * kSectorSize, "write",
                        [&](nbd::Connection& c, uint64_t off, uint64_t len) {
                          return c.write(off, len, buf + (off - sector * kSectorSize), s_.fua,
                                         s_.write_timeout_ms);
                        });
  }

  // Discard that reads back as zeros: NBD_CMD_WRITE_ZEROES without NO_HOLE, which lets the
  // server punch a hole. A server with TRIM alone is not used: TRIM may leave the old bytes
  // readable, and a punched range must read as zeros.
  Result<void> unmap(uint64_t sector, uint64_t count) override {
    if (read_only()) {
      return fail(VIX_E_FILE_READ_ONLY, pool_.where() +
                                            ": cannot discard, the disk is open read-only" +
                                            (info_.read_only() ? " (read-only export)" : ""));
    }
    VIX_TRY(check_range(sector, count));
    if (!info_.can_write_zeroes()) {
      return fail(VIX_E_NOT_SUPPORTED,
                  pool_.where() + ": the server cannot discard to zeros (no NBD_CMD_WRITE_ZEROES" +
                      (info_.can_trim() ? "; its TRIM may leave the old bytes readable)" : ")"));
    }
    if (count == 0) return ok();
    const uint64_t off = sector * kSectorSize, end = off + count * kSectorSize;
    const uint64_t mb = std::max<uint64_t>(info_.min_block, kSectorSize);
    // The middle, in whole minimum blocks, is zeroed (and perhaps deallocated) by the server;
    // the partial blocks at either end are written as zero sectors, as write() would.
    const uint64_t a_start = (off + mb - 1) / mb * mb;
    const uint64_t a_end = end == info_.size ? end : end / mb * mb;
    if (a_start >= a_end) return write_zero_sectors(off, end);
    if (off < a_start) VIX_TRY(write_zero_sectors(off, a_start));
    VIX_TRY(pool_.spread(a_start, a_end - a_start, "write zeroes",
                         [&](nbd::Connection& c, uint64_t o, uint64_t l) {
                           return c.write_zeroes(o, l, true, s_.write_timeout_ms);
                         }));
    if (a_end < end) VIX_TRY(write_zero_sectors(a_end, end));
    // WRITE_ZEROES carries no FUA here: a write-through disk flushes instead.
    if (s_.fua) VIX_TRY(flush());
    return ok();
  }

  Result<void> flush() override {
    if (read_only() || !info_.can_flush()) return ok();
    // Every connection: a write acknowledged on one is only known durable after its own FLUSH
    // unless the server promises multi-conn consistency, and the cost is one round trip each.
    for (size_t i = 0; i < pool_.size(); ++i) {
      VIX_TRY(pool_.with_retry(i, "flush", 0, 0,
                               [&](nbd::Connection& c) { return c.flush(s_.write_timeout_ms); }));
    }
    return ok();
  }

  Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override {
    VIX_TRY(check_range(sector, count));
    std::vector<SectorExtent> out;
    if (count == 0) return out;
    if (!info_.base_allocation) {
      out.push_back({sector, count});  // no map from the server: everything may hold data
      return out;
    }
    const uint64_t end = (sector + count) * kSectorSize;
    uint64_t cursor = sector * kSectorSize;
    const size_t slot = pool_.next_slot();
    while (cursor < end) {
      const uint64_t span = std::min(end - cursor, kMaxStatusSpan);
      std::vector<nbd::StatusExtent> extents;
      VIX_TRY(pool_.with_retry(
          slot, "block status", cursor, span, [&](nbd::Connection& c) -> Result<void> {
            VIX_ASSIGN_OR_RETURN(extents, c.block_status(cursor, span, s_.read_timeout_ms));
            return ok();
          }));
      if (extents.empty()) {
        return fail(VIX_E_HOST_TCP_CONN_LOST, pool_.where() + ": block status at offset " +
                                                  std::to_string(cursor) + " answered no extent");
      }
      for (const nbd::StatusExtent& e : extents) {
        if (e.offset != cursor || e.length == 0) {
          return fail(VIX_E_HOST_TCP_CONN_LOST,
                      pool_.where() + ": block status extent at " + std::to_string(e.offset) + "+" +
                          std::to_string(e.length) + " does not continue from offset " +
                          std::to_string(cursor));
        }
        const uint64_t e_end = std::min(end, e.offset + std::min(e.length, end - e.offset));
        if (!(e.flags & 1u)) {  // NBD_STATE_HOLE clear: the server stores data there
          const uint64_t first = e.offset / kSectorSize;
          const uint64_t last = (e_end + kSectorSize - 1) / kSectorSize;
          if (!out.empty() && out.back().start + out.back().count >= first) {
            out.back().count =
                std::max(out.back().start + out.back().count, last) - out.back().start;
          } else {
            out.push_back({first, last - first});
          }
        }
        cursor = e_end;
        if (cursor >= end) break;
      }
    }
    return out;
  }

 private:
  Result<void> check_range(uint64_t sector, uint64_t count) const {
    const uint64_t cap = capacity_sectors();
    if (sector > cap || count > cap - sector) {
      return fail(VIX_E_DISK_OUTOFRANGE, pool_.where() + ": sectors " + std::to_string(sector) +
                                             "+" + std::to_string(count) +
                                             " past the capacity of " + std::to_string(cap) +
                                             " sectors");
    }
    return ok();
  }

  Result<void> read_direct(uint64_t off, uint64_t len, uint8_t* buf) {
    return pool_.spread(off, len, "read", [&](nbd::Connection& c, uint64_t o, uint64_t l) {
      return c.read(o, l, buf + (o - off), s_.read_timeout_ms);
    });
  }

  // [off, end) is sector-aligned and spans at most two minimum blocks (at most 128 KiB).
  Result<void> write_zero_sectors(uint64_t off, uint64_t end) {
    const std::vector<uint8_t> zeros(end - off, 0);
    return write(off / kSectorSize, (end - off) / kSectorSize, zeros.data());
  }

  // [off, end) spans at most two of the server's minimum blocks (at most 64 KiB each).
  Result<void> read_bounced(uint64_t off, uint64_t end, uint8_t* buf) {
    const uint64_t mb = info_.min_block;
    const uint64_t b_start = off / mb * mb;
    const uint64_t b_end = std::min<uint64_t>((end + mb - 1) / mb * mb, info_.size);
    std::vector<uint8_t> bounce(b_end - b_start);
    VIX_TRY(read_direct(b_start, bounce.size(), bounce.data()));
    std::copy(bounce.begin() + (off - b_start), bounce.begin() + (end - b_start), buf);
    return ok();
  }

  NbdPool pool_;
  const NbdSettings& s_ = pool_.settings();
  const nbd::ExportInfo& info_ = pool_.info();
};

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_nbd_device(const NbdSettings& s) {
  const std::string mode = s.tls ? "nbdssl" : "nbd";
  const std::string where =
      mode + ": " + s.endpoint.display() + " export \"" + s.export_name + "\"";
  auto first = connect_nbd(s, net::deadline_after_ms(s.accept_timeout_ms));
  if (!first.ok()) {
    Error e = std::move(first).error();
    // The client's messages usually name the endpoint already; say it once.
    const bool named = e.message.find(s.endpoint.display()) != std::string::npos;
    e.message = (named ? mode : where) + ": " + e.message;
    return e;
  }
  const nbd::ExportInfo info = (*first)->info();
  if (info.size % kSectorSize != 0) {
    return fail(VIX_E_NOT_SUPPORTED, where + ": the export's size " + std::to_string(info.size) +
                                         " is not a multiple of 512 bytes");
  }
  if (info.min_block > 65536 || (info.min_block & (info.min_block - 1)) != 0) {
    return fail(VIX_E_NOT_SUPPORTED, where + ": the server's minimum block size " +
                                         std::to_string(info.min_block) +
                                         " is not a power of two up to 64 KiB");
  }
  if (info.size < s.min_capacity_bytes) {
    return fail(VIX_E_DISK_CAPACITY_MISMATCH,
                where + ": the export is smaller than the disk: " + std::to_string(info.size) +
                    " bytes served, the inventory says the disk holds " +
                    std::to_string(s.min_capacity_bytes));
  }
  std::vector<NbdConnPtr> pool = connect_pool(s, std::move(first).value());
  log::info(where + ": opened, " + std::to_string(info.size) + " bytes, " +
            std::to_string(pool.size()) + " connection(s)" +
            (info.read_only() ? ", read-only" : "") +
            (s.fua && !s.read_only && !info.read_only()
                 ? (info.can_fua() ? ", write-through (FUA)" : ", write-through (FLUSH per write)")
                 : "") +
            (info.base_allocation ? ", base:allocation" : ""));
  return std::unique_ptr<BlockDevice>(new NbdDevice(s, std::move(pool)));
}

}  // namespace vix
