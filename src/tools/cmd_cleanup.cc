// vixdisk cleanup: VixDiskLib_Cleanup by hand for one server — detaches the disks that killed
// processes of this host left hot-added to the proxy VM, and prints the counts.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tools/cli.h"

namespace vixdisk {

namespace {

// The password: --password-file's first line, else $VIXFS_PASSWORD (never on the command line,
// where /proc/<pid>/cmdline would show it).
bool read_password(const ParsedArgs& args, std::string* out, std::string* error) {
  const std::string file = args.get("password-file");
  if (!file.empty()) {
    FILE* f = fopen(file.c_str(), "re");
    if (!f) {
      *error = "password file " + file + ": cannot open";
      return false;
    }
    char buf[4096];
    if (fgets(buf, sizeof buf, f)) *out = buf;
    fclose(f);
    while (!out->empty() && (out->back() == '\n' || out->back() == '\r')) out->pop_back();
    return true;
  }
  if (const char* env = getenv("VIXFS_PASSWORD")) {
    *out = env;
    return true;
  }
  *error = "no password: use --password-file or VIXFS_PASSWORD";
  return false;
}

}  // namespace

int cmd_cleanup(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(args,
                           {{"server", true, 0},
                            {"port", true, 0},
                            {"user", true, 0},
                            {"password-file", true, 0},
                            {"thumbprint", true, 0},
                            {"name", true, 0},
                            {"json", false, 0}},
                           &error);
  if (!parsed) return usage_error(error);
  if (!parsed->positional.empty()) return usage_error("cleanup takes no DISK");
  vix::ConnectSpec spec;
  spec.server = parsed->get("server");
  if (spec.server.empty()) return usage_error("cleanup needs --server HOST or URL");
  if (parsed->has("port")) {
    char* end = nullptr;
    const std::string p = parsed->get("port");
    const unsigned long v = strtoul(p.c_str(), &end, 10);
    if (p.empty() || *end || v == 0 || v > 65535) return usage_error("--port " + p);
    spec.port = static_cast<uint32_t>(v);
  }
  spec.cred_type = VIXDISKLIB_CRED_UID;
  spec.user = parsed->get("user");
  spec.thumbprint = parsed->get("thumbprint");
  spec.config_scope = parsed->get("name");
  if (!spec.user.empty() && !read_password(*parsed, &spec.password, &error)) {
    return usage_error(error);
  }

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  auto r = vix::cleanup(spec);
  if (!r.ok()) return vix_error("cleanup " + spec.server, r.error());
  if (parsed->has("json")) {
    printf("{\"cleaned\": %u, \"remaining\": %u}\n", r->cleaned_up, r->remaining);
  } else {
    printf("cleaned %u, remaining %u\n", r->cleaned_up, r->remaining);
  }
  return kExitOk;
}

}  // namespace vixdisk
