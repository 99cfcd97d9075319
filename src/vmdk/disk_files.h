// Which files make up a VMDK disk, read from the file a user names: the one function behind
// `vixfs --local` (which .vmdk files of a folder are disks, and which are only extents or
// parents of others) and VixDiskLib_Unlink (what to remove). It reads the descriptor (a text
// file, or embedded in a hosted sparse extent) and nothing else: no extent is opened.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/byte_source.h"
#include "common/result.h"

namespace vix::vmdk {

struct DiskFiles {
  enum class Kind {
    kDescriptor,    // a text descriptor naming its extents
    kHostedSparse,  // a KDMV sparse extent with its descriptor inside (monolithicSparse, ...)
    kEsxSparse,     // a COWD or SEsparse extent: part of a vmfsSparse or seSparse disk, whose
                    // descriptor names it
  };
  Kind kind = Kind::kDescriptor;
  // The path given first, then the extent files it names (resolved, each once).
  std::vector<std::string> files;
  // The resolved parentFileNameHint; empty without a parent.
  std::string parent;
  // Set when the descriptor is there but does not parse (or is too large to read): the file is
  // still a disk, and opening it will report this.
  std::optional<Error> descriptor_error;
};

// Errors: the file cannot be read (the opener's error), or it is not the first file of a disk:
// VIX_E_DISK_INVALIDDISK saying what it is ("a flat extent", "a sparse extent without a
// descriptor", ...).
Result<DiskFiles> disk_files(SourceOpener& opener, const std::string& path);

}  // namespace vix::vmdk
