// The VMDK text descriptor: parsing (qemu-compatible interpretation, see
// docs/reference/vmdk-format.md §2) and writing (qemu-img create's exact template, §2.7), and
// the in-place edits a writer makes (CID rewrite on first write, DDB key updates).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/block_device.h"
#include "common/result.h"

namespace vix::vmdk {

inline constexpr uint32_t kNoParentCid = 0xffffffff;

struct ExtentLine {
  std::string access;  // "RW" (RDONLY/NOACCESS are kept here; the engine decides)
  uint64_t sectors = 0;
  std::string type;     // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, ...
  std::string file;     // as written in the descriptor (relative to its folder); empty for ZERO
  uint64_t offset = 0;  // sectors, FLAT only
  bool has_offset = false;
};

struct Descriptor {
  uint32_t cid = 0;
  uint32_t parent_cid = kNoParentCid;
  std::string create_type;
  std::string parent_file_name_hint;  // empty without a parent
  std::vector<ExtentLine> extents;
  // ddb.* keys (with the "ddb." prefix, as written) in file order, values unquoted.
  std::vector<std::pair<std::string, std::string>> ddb;
  // The first "encryption.*" key (VM encryption's key safe): the extents hold ciphertext.
  std::string encryption_key;

  // Parses descriptor text. `origin` (the file name) prefixes every error message; errors are
  // VIX_E_DISK_INVAL naming the line/field. Rejects absurd inputs (more than 10000 extents,
  // text over 1 MiB, a missing CID) instead of trying to honour them.
  static Result<Descriptor> parse(std::string_view text, const std::string& origin);

  // Text in qemu-img create's layout (§2.7).
  std::string render() const;

  // key may be given with or without the "ddb." prefix; matched case-insensitively.
  std::string ddb_value(const std::string& key, const std::string& fallback = "") const;

  // Sum of the extent lines' sector counts (sparse extents' headers may say otherwise).
  uint64_t total_sectors() const;
};

// The DiskInfo fields a disk database holds (geometry, BIOS geometry, adapter, uuid), from
// ddb(key) for the keys of kInfoDdbKeys ("" when a key is absent): the VMDK engine asks its
// descriptor, the NFC transport the host.
inline constexpr const char* kInfoDdbKeys[] = {
    "ddb.geometry.cylinders", "ddb.geometry.heads",
    "ddb.geometry.sectors",   "ddb.geometry.biosCylinders",
    "ddb.geometry.biosHeads", "ddb.geometry.biosSectors",
    "ddb.adapterType",        "ddb.uuid"};
void fill_info_from_ddb(const std::function<std::string(const std::string&)>& ddb, DiskInfo* info);

// A CID as descriptors write it: lower-case hex, not zero-padded (qemu's %x).
std::string format_cid(uint32_t cid);

// Both edits work on the text before the first NUL (embedded descriptors are NUL-padded) and
// return text without padding: the caller re-pads to the descriptor area.
// qemu's CID rewrite (§2.6) done safely: returns text with `CID=<new cid %x>` and nothing else
// changed (lines between CID and parentCID are kept, unlike qemu).
Result<std::string> rewrite_cid(std::string_view text, uint32_t new_cid, const std::string& origin);
// Sets (or appends) `key = "value"` in the DDB section, everything else unchanged. key may omit
// the "ddb." prefix. A value with a quote/newline is VIX_E_INVALID_ARG.
Result<std::string> set_ddb_value(std::string_view text, const std::string& key,
                                  const std::string& value, const std::string& origin);

// A random CID that is neither ffffffff nor fffffffe.
uint32_t new_content_id();

}  // namespace vix::vmdk
