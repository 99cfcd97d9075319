// --local PATH: which .vmdk files of a folder (or the one file given) are disks to show.
// A disk is a .vmdk with a descriptor (embedded in a KDMV header, or a text file naming a
// createType); files named by another disk's extent lines or parentFileNameHint are not shown.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "common/result.h"

namespace vixfs {

struct LocalDisk {
  std::string name;  // file name without .vmdk
  std::string path;
  timespec mtime{};
};

// notes: one line per .vmdk left out, saying why.
vix::Result<std::vector<LocalDisk>> scan_local(const std::string& path,
                                               std::vector<std::string>* notes);

}  // namespace vixfs
