#include "transports/file.h"

#include <sys/stat.h>

#include "common/byte_source.h"
#include "transports/config_keys.h"
#include "vmdk/vmdk.h"
#include "vsphere/session.h"

namespace vix {

namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The local folder of a remote datastore: a config mapping, else its URL when that is a path
// on this host (an NFS mount under the same path, or vcsim's folders).
constexpr PatternKey kDatastoreFolder{"vixfs.datastore.NAME",
                                      "the local folder where datastore NAME is mounted"};

Result<std::string> local_folder(const TransportContext& ctx, const DatastoreLocation& loc) {
  const std::string key = kDatastoreFolder.instance(loc.datastore);
  if (std::optional<std::string> dir = ctx.config.get(kDatastoreFolder, loc.datastore)) {
    if (!is_dir(*dir)) {
      return fail(VIX_E_NOT_SUPPORTED, "file: datastore " + loc.datastore + " is mapped to " +
                                           *dir + " by " + key + ", which is not a folder here");
    }
    return *dir;
  }
  std::string dir = loc.url;
  if (dir.rfind("ds://", 0) == 0) dir.erase(0, 5);
  if (dir.empty() || dir.front() != '/' || !is_dir(dir)) {
    return fail(VIX_E_NOT_SUPPORTED, "file: datastore " + loc.datastore +
                                         " is not mounted on this host (url " + loc.url +
                                         "; map it with " + key + ")");
  }
  return dir;
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> FileTransport::open(const TransportContext& ctx,
                                                         const std::string& path, uint32_t flags) {
  if (path.empty()) return fail(VIX_E_INVALID_ARG, "file: empty disk path");
  std::string local_path = path;
  if (!ctx.spec.is_local()) {
    if (ctx.remote == nullptr) {
      return fail(VIX_E_NOT_SUPPORTED, "file: no session with " + ctx.spec.server);
    }
    VIX_ASSIGN_OR_RETURN(DatastoreLocation loc, ctx.remote->locate(path));
    VIX_ASSIGN_OR_RETURN(std::string dir, local_folder(ctx, loc));
    if (dir.back() != '/') dir += '/';
    local_path = dir + loc.path;
  } else if (path[0] == '[') {
    return fail(VIX_E_INVALID_ARG,
                "file: " + path + " is a datastore path, which needs a connection to a server");
  }
  vmdk::OpenOptions options;
  options.read_only = ctx.read_only;
  options.single_link = (flags & VIXDISKLIB_FLAG_OPEN_SINGLE_LINK) != 0;
  options.direct = (flags & VIXDISKLIB_FLAG_OPEN_UNBUFFERED) != 0;
  options.transport = name();
  auto opener = make_local_opener();
  return vmdk::open(*opener, local_path, options);
}

KeyList file_config_keys() {
  static constexpr const ConfigKey* kKeys[] = {&kDatastoreFolder};
  return kKeys;
}

std::unique_ptr<Transport> make_file_transport() {
  return std::make_unique<FileTransport>();
}

}  // namespace vix
