// The san transport: a raw device mapping's LUN read directly as a block device of this host.
// The pieces below are exposed for tests; the transport itself is make_transport("san").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"

namespace vix {

// The NAA identifier (lower-case hex, no "naa." prefix) of a LUN from vSphere's ScsiLun uuid,
// the `lunUuid` of an RDM backing. That uuid is the host's VML name without "vml.": one byte of
// name type (02 = NAA), one of SCSI device type, two of LUN number, one reserved, then the NAA
// designator (16 bytes for NAA type 6, 8 for types 2, 3 and 5, its first hex digit), then six
// bytes derived from the product id:
//   0200000000 600a0b8000fa11ce0000000000000001 56697866732d  ->  600a0b8000fa11ce0000000000000001
// "vml." and "naa." prefixes, dashes and colons are accepted, and so is a bare NAA. nullopt when
// the LUN has no NAA name (serial-number and path-based names cannot be matched to a device).
std::optional<std::string> naa_from_lun_uuid(std::string_view lun_uuid);
// The NAA of an ESXi device path such as "/vmfs/devices/disks/naa.600a0b80..." (nullopt if none).
std::optional<std::string> naa_from_device_name(std::string_view device_name);

// The device names Linux (udev) gives a LUN with that NAA, in the order they are tried, relative
// to a device root: disk/by-id/wwn-0x<naa>, disk/by-id/scsi-3<naa>, then wwn-0x<naa> and
// scsi-3<naa> directly in the root (a test folder of links).
std::vector<std::string> san_device_candidates(const std::string& dev_root, const std::string& naa);

// vixDiskLib.transport.san.whitelist / blacklist (also allowList / denyList), VDDK's meaning:
// comma-separated device paths, shell wildcards (* ? [..], not matching '/'); a whitelisted
// device is always usable, a blacklisted one is not, and blacklist "all" leaves only the
// whitelisted ones.
class SanDeviceFilter {
 public:
  static SanDeviceFilter from_config(const Config& config);
  // `link` is the name the device was found under, `node` the node it resolves to; either may
  // be listed. On refusal *why says which setting refused it.
  bool allows(const std::string& link, const std::string& node, std::string* why) const;

 private:
  std::vector<std::string> white_, black_;
  bool black_all_ = false;
};

}  // namespace vix
