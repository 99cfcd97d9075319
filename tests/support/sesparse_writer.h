// A fixture writer for SEsparse disks (ESXi snapshot deltas), written from the facts of
// docs/reference/vmdk-format.md §9 and independent of the engine's reader: nothing else makes
// these files for us, and qemu-img reads them independently, so tests compare the two readers.
// It lays a disk out as ESXi does: `<name>.vmdk` (text descriptor, createType "seSparse") naming
// `<name>-sesparse.vmdk` (the SESPARSE extent).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vixtest {

struct SeSparseWrite {
  enum class Kind {
    kData,      // bytes at offset; a partly written grain keeps zeros elsewhere
    kZero,      // zero grains (GTE kind 2): zeros, never the parent's bytes
    kUnmapped,  // SCSI-unmapped grains (GTE kind 1): zeros too
  };
  uint64_t offset = 0;  // bytes; kZero/kUnmapped: grain-aligned
  Kind kind = Kind::kData;
  std::vector<uint8_t> bytes;  // kData
  uint64_t length = 0;         // kZero/kUnmapped: bytes, grain-aligned
};

struct SeSparseSpec {
  uint64_t capacity_sectors = 0;
  uint64_t grain_sectors = 8;  // the format (and qemu) require 8
  std::string parent_hint;     // parentFileNameHint; empty: no parent
  uint32_t parent_cid = 0xffffffff;
  uint32_t cid = 0x5e5e0001;
  // Clusters left unused before the first grain, so that cluster numbers need the GTE's high
  // part (above 4095) without writing 16 MiB of data.
  uint64_t first_cluster = 0;
  bool dirty = false;                 // replayJournal = 1 in the volatile header
  std::vector<SeSparseWrite> writes;  // applied in order; later writes win
};

// Writes dir/<name>.vmdk and dir/<name>-sesparse.vmdk. Returns "" on success, else what went
// wrong (a bad spec or an I/O error).
std::string write_sesparse(const std::string& dir, const std::string& name,
                           const SeSparseSpec& spec);

// Byte offset in the extent file of const-header field i (0 = magic ... 25 = grainsSize), and
// of the volatile header, for tests that corrupt them.
inline uint64_t sesparse_field(int i) {
  return uint64_t(i) * 8;
}
enum SeSparseField {
  kSesMagic = 0,
  kSesVersion,
  kSesCapacity,
  kSesGrainSize,
  kSesGrainTableSize,
  kSesFlags,
  kSesReserved1,
  kSesReserved2,
  kSesReserved3,
  kSesReserved4,
  kSesVolatileOffset,
  kSesVolatileSize,
  kSesJournalHeaderOffset,
  kSesJournalHeaderSize,
  kSesJournalOffset,
  kSesJournalSize,
  kSesGrainDirOffset,
  kSesGrainDirSize,
  kSesGrainTablesOffset,
  kSesGrainTablesSize,
  kSesFreeBitmapOffset,
  kSesFreeBitmapSize,
  kSesBackmapOffset,
  kSesBackmapSize,
  kSesGrainsOffset,
  kSesGrainsSize,
};

}  // namespace vixtest
