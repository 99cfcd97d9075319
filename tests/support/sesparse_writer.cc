#include "support/sesparse_writer.h"

#include <cstdio>
#include <fstream>
#include <map>

namespace vixtest {

namespace {

constexpr uint64_t kGtEntries = 4096;  // u64 entries of one 64-sector grain table
constexpr uint64_t kGtSectors = 64;

void put64(std::vector<uint8_t>& f, uint64_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) f[off + i] = uint8_t(v >> (8 * i));
}

uint64_t div_up(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

struct Grain {
  SeSparseWrite::Kind kind = SeSparseWrite::Kind::kData;
  std::vector<uint8_t> data;  // kData: one grain
};

std::string descriptor(const std::string& extent, const SeSparseSpec& s) {
  char ids[64];
  std::snprintf(ids, sizeof ids, "CID=%08x\nparentCID=%08x\n", s.cid, s.parent_cid);
  std::string t = "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\n";
  t += ids;
  t += "createType=\"seSparse\"\n";
  if (!s.parent_hint.empty()) t += "parentFileNameHint=\"" + s.parent_hint + "\"\n";
  // The extent line directly under its comment: qemu reads a blank line before an extent line
  // as a second copy of it (§2.4).
  t += "# Extent description\nRW " + std::to_string(s.capacity_sectors) + " SESPARSE \"" + extent +
       "\"\n\n# The Disk Data Base\n#DDB\n\nddb.grain = \"8\"\nddb.virtualHWVersion = \"14\"\n";
  return t;
}

}  // namespace

std::string write_sesparse(const std::string& dir, const std::string& name, const SeSparseSpec& s) {
  const uint64_t gs = s.grain_sectors, gbytes = gs * 512;
  if (gs == 0 || s.capacity_sectors == 0) return "capacity and grain size must not be 0";
  const uint64_t grains = div_up(s.capacity_sectors, gs);

  // The disk as grains, after every write.
  std::map<uint64_t, Grain> g;
  for (const SeSparseWrite& w : s.writes) {
    if (w.kind == SeSparseWrite::Kind::kData) {
      if (w.offset + w.bytes.size() > s.capacity_sectors * 512) return "write past the capacity";
      for (uint64_t i = 0; i < w.bytes.size();) {
        const uint64_t at = w.offset + i, gi = at / gbytes, in = at % gbytes;
        const uint64_t n = std::min<uint64_t>(gbytes - in, w.bytes.size() - i);
        Grain& grain = g[gi];
        if (grain.kind != SeSparseWrite::Kind::kData || grain.data.empty()) {
          grain.kind = SeSparseWrite::Kind::kData;
          grain.data.assign(gbytes, 0);
        }
        std::copy(w.bytes.begin() + i, w.bytes.begin() + i + n, grain.data.begin() + in);
        i += n;
      }
    } else {
      if (w.offset % gbytes || w.length % gbytes)
        return "zero/unmapped writes must be grain-aligned";
      if (w.offset + w.length > grains * gbytes) return "zero/unmapped write past the capacity";
      for (uint64_t gi = w.offset / gbytes; gi < (w.offset + w.length) / gbytes; ++gi)
        g[gi] = Grain{w.kind, {}};
    }
  }

  // Layout in sectors: const header, volatile header, journal header, journal, GD, grain
  // tables, free bitmap, backmap, grains. The regions qemu ignores get room but stay zero.
  const uint64_t gd_entries = div_up(grains, kGtEntries);
  const uint64_t gd_sectors = div_up(gd_entries * 8, 512);
  const uint64_t vol = 1, jhdr = 2, journal = 8, journal_size = 8;
  const uint64_t gd = 16;
  const uint64_t gts = div_up(gd + gd_sectors, 8) * 8, gts_size = gd_entries * kGtSectors;
  const uint64_t bitmap = gts + gts_size, bitmap_size = 8;
  const uint64_t backmap = bitmap + bitmap_size, backmap_size = 8;
  const uint64_t grains_off = backmap + backmap_size;

  // Tables are numbered from the last used directory entry down, and clusters from the last
  // data grain down: neither index equals its position, so an identity misread shows.
  std::map<uint64_t, uint64_t> table_of;  // GD index -> grain table index
  uint64_t data_grains = 0;
  for (const auto& [gi, grain] : g) {
    table_of[gi / kGtEntries] = 0;
    if (grain.kind == SeSparseWrite::Kind::kData) ++data_grains;
  }
  uint64_t next_table = 0;
  for (auto it = table_of.rbegin(); it != table_of.rend(); ++it) it->second = next_table++;
  const uint64_t grains_size = (s.first_cluster + data_grains) * gs;
  std::vector<uint8_t> f((grains_off + grains_size) * 512, 0);

  const uint64_t h[26] = {0xcafebabe,
                          0x0000000200000001,
                          s.capacity_sectors,
                          gs,
                          kGtSectors,
                          0,
                          0,
                          0,
                          0,
                          0,
                          vol,
                          1,
                          jhdr,
                          1,
                          journal,
                          journal_size,
                          gd,
                          gd_sectors,
                          gts,
                          gts_size,
                          bitmap,
                          bitmap_size,
                          backmap,
                          backmap_size,
                          grains_off,
                          grains_size};
  for (int i = 0; i < 26; ++i) put64(f, uint64_t(i) * 8, h[i]);
  put64(f, vol * 512 + 0, 0xcafecafe);
  put64(f, vol * 512 + 8, next_table);  // freeGTNumber: the first unused table
  put64(f, vol * 512 + 16, 1);          // nextTxnSeqNumber
  put64(f, vol * 512 + 24, s.dirty ? 1 : 0);
  for (const auto& [gdi, t] : table_of)
    put64(f, gd * 512 + gdi * 8, uint64_t{0x10000000} << 32 | t);

  uint64_t cluster = s.first_cluster + data_grains;
  for (auto it = g.rbegin(); it != g.rend(); ++it) {
    const auto& [gi, grain] = *it;
    const uint64_t gte_at =
        (gts + table_of[gi / kGtEntries] * kGtSectors) * 512 + (gi % kGtEntries) * 8;
    uint64_t gte = 0;
    switch (grain.kind) {
      case SeSparseWrite::Kind::kUnmapped:
        gte = uint64_t{1} << 60;
        break;
      case SeSparseWrite::Kind::kZero:
        gte = uint64_t{2} << 60;
        break;
      case SeSparseWrite::Kind::kData:
        --cluster;
        // The low 12 bits of the cluster go to bits 48..59, the rest to bits 0..47.
        gte = uint64_t{3} << 60 | (cluster & 0xfff) << 48 | (cluster >> 12);
        std::copy(grain.data.begin(), grain.data.end(),
                  f.begin() + (grains_off + cluster * gs) * 512);
        break;
    }
    put64(f, gte_at, gte);
  }

  const std::string extent = name + "-sesparse.vmdk";
  std::ofstream out(dir + "/" + extent, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(f.data()), std::streamsize(f.size()));
  std::ofstream d(dir + "/" + name + ".vmdk", std::ios::binary | std::ios::trunc);
  d << descriptor(extent, s);
  if (!out || !d) return "cannot write " + dir + "/" + name + ".vmdk or its extent";
  return "";
}

}  // namespace vixtest
