// Reading a whole vix::Disk the way tests compare it with qemu-img: in odd-sized requests, so
// that reads cross grain, chunk and request boundaries. Header-only: the support library sits
// below the disk library.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "vix/connection.h"

namespace vixtest {

// Every sector of d, `step` sectors a request; a failed read is a test failure and ends the read.
inline std::vector<uint8_t> read_all(vix::Disk& d, uint64_t step = 5000) {
  const uint64_t sectors = d.info().capacity_sectors;
  std::vector<uint8_t> out(sectors * vix::kSectorSize);
  for (uint64_t s = 0; s < sectors; s += step) {
    const uint64_t n = std::min(step, sectors - s);
    auto r = d.read(s, n, out.data() + s * vix::kSectorSize);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) break;
  }
  return out;
}

}  // namespace vixtest
