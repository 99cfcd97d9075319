// One extent of a VMDK link: a range of the link's sectors backed by a flat file, a sparse
// (KDMV) file or nothing (ZERO). The disk maps a request onto runs, then reads each run; holes
// are resolved by the disk (parent link or zeros), so extents know nothing about chains.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/byte_source.h"
#include "common/result.h"

namespace vix::vmdk {

enum class RunKind : uint8_t {
  kData,        // host = byte offset of the run's first sector in the extent file
  kZero,        // reads as zeros, never parent data (zeroed GTE, ZERO extent)
  kHole,        // unallocated: the parent's bytes, or zeros without one
  kCompressed,  // host = sector of the grain's compressed stream; one grain at most
};

struct Run {
  uint64_t sector = 0;  // extent-relative
  uint64_t count = 0;
  RunKind kind = RunKind::kHole;
  uint64_t host = 0;
};

// Fills dst with `count` sectors of what lies below `sector` (extent-relative): parent data or
// zeros. Used for the head and tail of a newly allocated grain.
using BelowReader = std::function<Result<void>(uint64_t sector, uint64_t count, uint8_t* dst)>;

class Extent {
 public:
  virtual ~Extent() = default;

  virtual uint64_t sectors() const = 0;
  // Appends runs that cover [sector, sector+count) exactly, in order. Adjacent data runs that are
  // contiguous in the file are merged so that one pread serves them.
  virtual Result<void> map(uint64_t sector, uint64_t count, std::vector<Run>& out) = 0;
  // Reads a kData or kCompressed run produced by map() into buf (run.count*512 bytes).
  virtual Result<void> read_run(const Run& run, uint8_t* buf) = 0;

  // Whether writing [sector, sector+count) would need bytes from below (a partial grain over a
  // hole). Lets the disk check the parent CID before anything is written.
  virtual Result<bool> write_needs_below(uint64_t sector, uint64_t count) = 0;
  // Writes without flushing. The caller holds the disk's exclusive lock.
  virtual Result<void> write(uint64_t sector, uint64_t count, const uint8_t* buf,
                             const BelowReader& below) = 0;
  virtual Result<void> flush() = 0;
  // ok() when writable; else the error writes get (VIX_E_FILE_READ_ONLY, VIX_E_NOT_SUPPORTED).
  virtual Result<void> check_writable() const = 0;
  virtual ByteSource* source() { return nullptr; }
};

}  // namespace vix::vmdk
