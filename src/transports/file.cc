#include "transports/file.h"

#include "common/byte_source.h"
#include "vmdk/vmdk.h"

namespace vix {

Result<std::unique_ptr<BlockDevice>> FileTransport::open(const TransportContext& ctx,
                                                         const std::string& path, uint32_t flags) {
  if (!ctx.spec.is_local()) {
    return fail(VIX_E_NOT_SUPPORTED,
                "file: datastore paths of " + ctx.spec.server + " are not mapped to local folders");
  }
  if (path.empty()) return fail(VIX_E_INVALID_ARG, "file: empty disk path");
  if (path[0] == '[') {
    return fail(VIX_E_INVALID_ARG,
                "file: " + path + " is a datastore path, which needs a connection to a server");
  }
  vmdk::OpenOptions options;
  options.read_only = ctx.read_only;
  options.single_link = (flags & VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) != 0;
  options.direct = (flags & VIXDISKLIB_FLAG_OPEN_UNBUFFERED) != 0;
  options.transport = name();
  auto opener = make_local_opener();
  return vmdk::open(*opener, path, options);
}

std::unique_ptr<Transport> make_file_transport() {
  return std::make_unique<FileTransport>();
}

}  // namespace vix
