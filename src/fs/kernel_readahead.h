// The kernel's read-ahead for the mount. FUSE caps a mount's read-ahead at the kernel default
// (128 KiB) when it starts, so sequential reads of a disk file reach the daemon as 128 KiB
// requests, one or two in flight. Raising the mount's backing-device read_ahead_kb (root only)
// lets the kernel ask for max_read-sized requests (960 KiB) several at a time.
#pragma once

#include <cstdint>
#include <string>

namespace vixfs {

// Right after the mount: finds the mount's device number in /proc/self/mountinfo. kb == 0
// leaves the kernel's setting alone.
void arm_kernel_readahead(const std::string& mountpoint, uint32_t kb);

// Writes read_ahead_kb once. It must run after FUSE's INIT reply (which lowers the value to the
// init's max_readahead) and before a disk file's open completes (an open file takes the value
// it sees then), so the first open of a disk file calls it. Failures are logged, never fatal.
void apply_kernel_readahead();

}  // namespace vixfs
