#include "vmdk/vmdk_disk.h"

#include <algorithm>
#include <cstring>
#include <mutex>

namespace vix::vmdk {

namespace {

constexpr uint64_t kMaxDescriptorBytes = 1 << 20;
// 64 MiB of answer; a more fragmented range has to be asked for in pieces.
constexpr size_t kMaxAllocatedExtents = size_t{4} << 20;

// Index of the extent holding `sector` (empty extents are skipped by upper_bound).
size_t extent_index(const Link& link, uint64_t sector) {
  auto it = std::upper_bound(link.starts.begin(), link.starts.end() - 1, sector);
  return static_cast<size_t>(it - link.starts.begin()) - 1;
}

}  // namespace

Result<std::string> Link::read_descriptor_text() {
  if (embedded) return embedded->read_embedded_descriptor();
  VIX_ASSIGN_OR_RETURN(uint64_t size, desc_src->size());
  if (size > kMaxDescriptorBytes)
    return fail(VIX_E_DISK_INVAL, path + ": descriptor file is larger than 1 MiB");
  std::string text(size, '\0');
  VIX_TRY(desc_src->read_exact(text.data(), text.size(), 0, "descriptor"));
  return text;
}

Result<void> Link::write_descriptor_text(const std::string& text) {
  if (embedded) {
    VIX_TRY(embedded->write_embedded_descriptor(text));
    return embedded->flush();
  }
  VIX_ASSIGN_OR_RETURN(uint64_t old_size, desc_src->size());
  std::string out = text;
  // One pwrite of at least the old length: never a moment with a truncated descriptor, and
  // trailing newlines are harmless to every reader.
  if (out.size() < old_size) out.append(old_size - out.size(), '\n');
  VIX_TRY(desc_src->pwrite(out.data(), out.size(), 0));
  return desc_src->flush();
}

DiskInfo VmdkDisk::info() const {
  std::shared_lock lock(mu_);
  const Link& leaf = *links_[0];
  DiskInfo info;
  info.capacity_sectors = leaf.capacity;
  const Descriptor& d = leaf.desc;
  fill_info_from_ddb([&d](const std::string& key) { return d.ddb_value(key); }, &info);
  info.num_links = static_cast<int>(links_.size());
  info.parent_file_name_hint = d.parent_file_name_hint;
  info.create_type = leaf.create_type;
  return info;
}

Result<void> VmdkDisk::check_range(uint64_t sector, uint64_t count) const {
  uint64_t cap = links_[0]->capacity;
  if (sector > cap || count > cap - sector) {
    return fail(VIX_E_DISK_OUTOFRANGE, links_[0]->path + ": sectors " + std::to_string(sector) +
                                           "+" + std::to_string(count) +
                                           " lie beyond the capacity of " + std::to_string(cap));
  }
  return ok();
}

Result<void> VmdkDisk::check_parent(size_t li) {
  Link& child = *links_[li];
  if (child.parent_checked.load(std::memory_order_acquire)) return ok();
  Link& parent = *links_[li + 1];
  // qemu re-reads the parent's CID lazily, when parent data is first needed (§7).
  VIX_ASSIGN_OR_RETURN(std::string text, parent.read_descriptor_text());
  VIX_ASSIGN_OR_RETURN(Descriptor pd, Descriptor::parse(text, parent.path));
  if (pd.cid != child.desc.parent_cid) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ": parentCID %08x does not match CID %08x of parent ",
                  child.desc.parent_cid, pd.cid);
    return fail(VIX_E_DISK_CID_MISMATCH, child.path + buf + parent.path);
  }
  child.parent_checked.store(true, std::memory_order_release);
  return ok();
}

// Maps [sector, sector+count) of one link onto its extents' runs, in order, and calls
// fn(extent, link-relative sector of the run, run) for each; stops at the first error.
template <class Fn>
Result<void> for_each_run(Link& link, uint64_t sector, uint64_t count, Fn&& fn) {
  std::vector<Run> runs;
  size_t ei = extent_index(link, sector);
  while (count > 0 && ei < link.extents.size()) {
    Extent& ext = *link.extents[ei];
    uint64_t rel = sector - link.starts[ei];
    uint64_t n = std::min(count, ext.sectors() - rel);
    runs.clear();
    VIX_TRY(ext.map(rel, n, runs));
    for (const Run& run : runs) VIX_TRY(fn(ext, link.starts[ei] + run.sector, run));
    sector += n, count -= n;
    ++ei;
  }
  return ok();
}

Result<void> VmdkDisk::read(uint64_t sector, uint64_t count, uint8_t* buf) {
  VIX_TRY(check_range(sector, count));
  std::shared_lock lock(mu_);
  return read_link(0, sector, count, buf);
}

Result<void> VmdkDisk::read_link(size_t li, uint64_t sector, uint64_t count, uint8_t* buf) {
  Link& link = *links_[li];
  // A parent shorter than its child reads as zeros past its end.
  if (sector >= link.capacity) {
    std::memset(buf, 0, count * 512);
    return ok();
  }
  if (count > link.capacity - sector) {
    uint64_t keep = link.capacity - sector;
    std::memset(buf + keep * 512, 0, (count - keep) * 512);
    count = keep;
  }
  const uint64_t first = sector;
  return for_each_run(link, sector, count,
                      [&](Extent& ext, uint64_t abs, const Run& run) -> Result<void> {
                        uint8_t* p = buf + (abs - first) * 512;
                        switch (run.kind) {
                          case RunKind::kData:
                          case RunKind::kCompressed:
                            return ext.read_run(run, p);
                          case RunKind::kZero:
                            std::memset(p, 0, run.count * 512);
                            return ok();
                          case RunKind::kHole:
                            return read_under(li, abs, run.count, p);
                        }
                        return ok();
                      });
}

Result<void> VmdkDisk::read_under(size_t li, uint64_t sector, uint64_t count, uint8_t* buf) {
  if (li + 1 < links_.size()) {
    VIX_TRY(check_parent(li));
    return read_link(li + 1, sector, count, buf);
  }
  if (!below_) {
    std::memset(buf, 0, count * 512);
    return ok();
  }
  const uint64_t cap = below_->capacity_sectors();
  const uint64_t inside = sector >= cap ? 0 : std::min(count, cap - sector);
  if (inside < count) std::memset(buf + inside * 512, 0, (count - inside) * 512);
  return inside == 0 ? ok() : below_->read(sector, inside, buf);
}

namespace {

// Appends a piece, joining it to the last one when it continues it (zeros after zeros, or the
// next bytes of the same file), so that a dense disk's 1 MiB read is one splice.
void add_piece(std::vector<HostPiece>* out, int fd, uint64_t offset, uint64_t bytes) {
  if (!out->empty()) {
    HostPiece& last = out->back();
    if (last.fd == fd && !last.mem && (fd < 0 || last.offset + last.bytes == offset)) {
      last.bytes += bytes;
      return;
    }
  }
  out->push_back({fd, offset, bytes, nullptr, nullptr});
}

}  // namespace

Result<bool> VmdkDisk::map_to_host(uint64_t sector, uint64_t count, std::vector<HostPiece>* out) {
  VIX_TRY(check_range(sector, count));
  const size_t first_piece = out->size();
  std::shared_lock lock(mu_);
  Result<bool> mapped = map_link(0, sector, count, out);
  if (!mapped.ok() || !*mapped) out->resize(first_piece);
  return mapped;
}

Result<bool> VmdkDisk::map_link(size_t li, uint64_t sector, uint64_t count,
                                std::vector<HostPiece>* out) {
  Link& link = *links_[li];
  if (sector >= link.capacity) {
    add_piece(out, -1, 0, count * 512);
    return true;
  }
  const uint64_t beyond = count > link.capacity - sector ? count - (link.capacity - sector) : 0;
  bool mapped = true;
  // The last size seen of a file: a fragmented read maps many runs of the same extent, and its
  // file only grows while open, so one fstat covers every run that ends inside it.
  ByteSource* sized = nullptr;
  uint64_t known_size = 0;
  VIX_TRY(for_each_run(
      link, sector, count - beyond, [&](Extent& ext, uint64_t abs, const Run& run) -> Result<void> {
        if (!mapped) return ok();
        const uint64_t bytes = run.count * 512;
        switch (run.kind) {
          case RunKind::kData: {
            ByteSource* src = ext.source();
            const int fd = src ? src->fd() : -1;
            if (fd < 0) {
              mapped = false;
              return ok();
            }
            // read_run pads a run past the file's end with zeros; a splice would come up short
            // and the kernel would take the short reply for the end of the disk.
            if (src != sized || run.host + bytes > known_size) {
              VIX_ASSIGN_OR_RETURN(known_size, src->size());
              sized = src;
            }
            if (run.host > known_size || bytes > known_size - run.host) {
              mapped = false;
              return ok();
            }
            add_piece(out, fd, run.host, bytes);
            return ok();
          }
          case RunKind::kCompressed:
            mapped = false;
            return ok();
          case RunKind::kZero:
            add_piece(out, -1, 0, bytes);
            return ok();
          case RunKind::kHole:
            if (li + 1 < links_.size()) {
              VIX_TRY(check_parent(li));
              VIX_ASSIGN_OR_RETURN(mapped, map_link(li + 1, abs, run.count, out));
            } else if (below_) {
              const uint64_t cap = below_->capacity_sectors();
              const uint64_t inside = abs >= cap ? 0 : std::min(run.count, cap - abs);
              if (inside > 0) {
                VIX_ASSIGN_OR_RETURN(mapped, below_->map_to_host(abs, inside, out));
              }
              if (mapped && inside < run.count) add_piece(out, -1, 0, (run.count - inside) * 512);
            } else {
              add_piece(out, -1, 0, bytes);
            }
            return ok();
        }
        return ok();
      }));
  if (mapped && beyond > 0) add_piece(out, -1, 0, beyond * 512);
  return mapped;
}

Result<void> VmdkDisk::rewrite_cid_once() {
  if (cid_rewritten_) return ok();
  Link& leaf = *links_[0];
  // What was written is durable before the descriptor says the content changed (qemu's
  // order). Once per open: later writes are made durable by flush(), not one fdatasync each
  // (which halved sequential write speed on a real disk).
  for (auto& ext : leaf.extents) VIX_TRY(ext->flush());
  VIX_ASSIGN_OR_RETURN(std::string text, leaf.read_descriptor_text());
  uint32_t cid = new_content_id();
  VIX_ASSIGN_OR_RETURN(std::string updated, rewrite_cid(text, cid, leaf.path));
  VIX_TRY(leaf.write_descriptor_text(updated));
  leaf.desc.cid = cid;
  cid_rewritten_ = true;
  return ok();
}

Result<void> VmdkDisk::write(uint64_t sector, uint64_t count, const uint8_t* buf) {
  if (read_only_) return fail(VIX_E_FILE_READ_ONLY, links_[0]->path + ": disk opened read-only");
  VIX_TRY(check_range(sector, count));
  std::unique_lock lock(mu_);
  Link& leaf = *links_[0];
  const bool has_parent = links_.size() > 1;
  const bool has_below = has_parent || below_ != nullptr;
  // Dry run: refuse or fail on a stale parent before a single byte is written.
  for (size_t ei = extent_index(leaf, sector);
       ei < leaf.extents.size() && leaf.starts[ei] < sector + count; ++ei) {
    uint64_t s = std::max(sector, leaf.starts[ei]);
    uint64_t e = std::min(sector + count, leaf.starts[ei + 1]);
    if (s >= e) continue;
    Extent& ext = *leaf.extents[ei];
    VIX_TRY(ext.check_writable());
    VIX_ASSIGN_OR_RETURN(bool needs, ext.write_needs_below(s - leaf.starts[ei], e - s));
    if (needs && has_parent) VIX_TRY(check_parent(0));
  }
  size_t ei = extent_index(leaf, sector);
  while (count > 0 && ei < leaf.extents.size()) {
    Extent& ext = *leaf.extents[ei];
    uint64_t base = leaf.starts[ei];
    uint64_t rel = sector - base;
    uint64_t n = std::min(count, ext.sectors() - rel);
    BelowReader below = [&](uint64_t s, uint64_t c, uint8_t* dst) -> Result<void> {
      if (!has_below) {
        std::memset(dst, 0, c * 512);
        return ok();
      }
      return read_under(0, base + s, c, dst);
    };
    if (n > 0) VIX_TRY(ext.write(rel, n, buf, below));
    sector += n, count -= n, buf += n * 512;
    ++ei;
    VIX_TRY(rewrite_cid_once());
  }
  return ok();
}

Result<void> VmdkDisk::flush() {
  if (read_only_) return ok();
  std::shared_lock lock(mu_);
  for (auto& ext : links_[0]->extents) VIX_TRY(ext->flush());
  return ok();
}

Result<std::vector<SectorExtent>> VmdkDisk::allocated(uint64_t sector, uint64_t count) {
  VIX_TRY(check_range(sector, count));
  std::shared_lock lock(mu_);
  std::vector<SectorExtent> out;
  VIX_TRY(alloc_link(0, sector, count, out));
  return out;
}

Result<void> VmdkDisk::alloc_link(size_t li, uint64_t sector, uint64_t count,
                                  std::vector<SectorExtent>& out) {
  Link& link = *links_[li];
  if (sector >= link.capacity) return ok();
  count = std::min(count, link.capacity - sector);
  auto add = [&](SectorExtent e) -> Result<void> {
    if (!out.empty() && out.back().start + out.back().count == e.start) {
      out.back().count += e.count;
      return ok();
    }
    if (out.size() >= kMaxAllocatedExtents)
      return fail(VIX_E_INVALID_ARG, link.path + ": more than " +
                                         std::to_string(kMaxAllocatedExtents) +
                                         " allocated extents; query a smaller range");
    out.push_back(e);
    return ok();
  };
  return for_each_run(
      link, sector, count, [&](Extent&, uint64_t abs, const Run& run) -> Result<void> {
        if (run.kind == RunKind::kData || run.kind == RunKind::kCompressed) {
          return add(SectorExtent{abs, run.count});
        }
        if (run.kind != RunKind::kHole) return ok();
        if (li + 1 < links_.size()) return alloc_link(li + 1, abs, run.count, out);
        if (!below_ || abs >= below_->capacity_sectors()) return ok();
        VIX_ASSIGN_OR_RETURN(
            auto under,
            below_->allocated(abs, std::min(run.count, below_->capacity_sectors() - abs)));
        for (const SectorExtent& e : under) VIX_TRY(add(e));
        return ok();
      });
}

Result<std::map<std::string, std::string>> VmdkDisk::metadata() {
  std::shared_lock lock(mu_);
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : links_[0]->desc.ddb) out[k] = v;
  return out;
}

Result<void> VmdkDisk::write_metadata(const std::string& key, const std::string& value) {
  if (read_only_) return fail(VIX_E_FILE_READ_ONLY, links_[0]->path + ": disk opened read-only");
  std::unique_lock lock(mu_);
  Link& leaf = *links_[0];
  VIX_ASSIGN_OR_RETURN(std::string text, leaf.read_descriptor_text());
  VIX_ASSIGN_OR_RETURN(std::string updated, set_ddb_value(text, key, value, leaf.path));
  VIX_ASSIGN_OR_RETURN(Descriptor parsed, Descriptor::parse(updated, leaf.path));
  VIX_TRY(leaf.write_descriptor_text(updated));
  leaf.desc.ddb = std::move(parsed.ddb);
  return ok();
}

}  // namespace vix::vmdk
