// The copy engine of `vixdisk cat` and `vixdisk backup`: a reader thread fills large buffers
// while the caller's thread writes the previous ones, so disk reads and output writes overlap.
// Into a regular file the output is sparse: chunks the allocation map calls holes are never
// read, all-zero blocks are never written, and the caller sets the size with ftruncate.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "tools/cli.h"

namespace vixdisk {

// Where the bytes go.
struct Sink {
  int fd = STDOUT_FILENO;
  std::string name = "stdout";
  bool seekable = false;  // pwrite at offsets; else one sequential stream
  bool sparse = false;    // a regular file: skip zero blocks, ftruncate at the end

  // 0 or an errno.
  int write_at(const uint8_t* p, size_t n, uint64_t off) const;
  // Writes only the runs of non-zero 4 KiB blocks (aligned to the output offset).
  int write_sparse(const uint8_t* p, size_t n, uint64_t off) const;
};

struct CopyOptions {
  uint64_t offset = 0, end = 0;  // the disk's bytes [offset, end) go to sink offset 0..
  uint64_t block_size = kMiB;    // a multiple of 512
  // Skip chunks the disk's allocation map calls holes (only right where the map covers every
  // link the disk reads through).
  bool use_map = false;
  std::string label;  // the disk, for errors and the progress bar
  std::string progress_label = "cat";
  // Sees every byte of the range in order, holes as zeros (a checksum); optional.
  std::function<void(const uint8_t*, size_t)> observe;
  // Set from another thread (a signal) to stop at the next chunk.
  const std::atomic<bool>* cancel = nullptr;
};

struct CopyStats {
  uint64_t read_bytes = 0;  // read from the disk (not holes)
  bool cancelled = false;
};

// Returns kExitOk, or the exit code of the failure (already reported). A cancelled copy returns
// kExitOk with stats->cancelled set.
int copy_disk(vix::Disk& disk, const Sink& sink, const CopyOptions& options, CopyStats* stats);

}  // namespace vixdisk
