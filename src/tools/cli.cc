#include "tools/cli.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "vix/errors.h"
#include "vix/library.h"

namespace vixdisk {

namespace {
bool g_verbose = false;
// 1 Gi sectors would be 512 GiB; a window of 2 Mi sectors (1 GiB) bounds the extent list.
constexpr uint64_t kWindowSectors = 2 * 1024 * 1024;
}  // namespace

const std::vector<OptionSpec>& global_option_specs() {
  static const std::vector<OptionSpec> specs = {
      {"config", true, 0},      {"transports", true, 0}, {"single-link", false, 0},
      {"unbuffered", false, 0}, {"verbose", false, 'v'}, {"help", false, 'h'},
  };
  return specs;
}

std::optional<ParsedArgs> parse_args(const std::vector<std::string>& args,
                                     const std::vector<OptionSpec>& command_options,
                                     std::string* error) {
  std::vector<OptionSpec> specs = command_options;
  specs.insert(specs.end(), global_option_specs().begin(), global_option_specs().end());
  ParsedArgs out;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_positional || a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    const OptionSpec* spec = nullptr;
    std::optional<std::string> inline_value;
    if (a[1] == '-') {
      std::string name = a.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
      for (const auto& s : specs)
        if (name == s.name) spec = &s;
    } else if (a.size() == 2) {
      for (const auto& s : specs)
        if (s.short_name != 0 && a[1] == s.short_name) spec = &s;
    } else {
      // "-ofile": short option glued to its value.
      for (const auto& s : specs)
        if (s.short_name != 0 && a[1] == s.short_name && s.takes_value) spec = &s;
      if (spec) inline_value = a.substr(2);
    }
    if (!spec) {
      *error = "unknown option '" + a + "'";
      return std::nullopt;
    }
    if (!spec->takes_value) {
      if (inline_value) {
        *error = "option '--" + std::string(spec->name) + "' takes no value";
        return std::nullopt;
      }
      out.flags.insert(spec->name);
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) {
        *error = "option '" + a + "' needs a value";
        return std::nullopt;
      }
      inline_value = args[++i];
    }
    out.values[spec->name] = *inline_value;
  }
  return out;
}

GlobalOptions global_options(const ParsedArgs& args) {
  GlobalOptions g;
  g.config_file = args.get("config");
  g.transports = args.get("transports");
  g.single_link = args.has("single-link");
  g.unbuffered = args.has("unbuffered");
  g.verbose = args.has("verbose");
  return g;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  if (i == 0) return std::nullopt;
  std::string suffix(text.substr(i));
  for (auto& c : suffix) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, int> shifts = {
      {"", 0},    {"B", 0},    {"K", 10}, {"KB", 10}, {"KIB", 10}, {"M", 20},
      {"MB", 20}, {"MIB", 20}, {"G", 30}, {"GB", 30}, {"GIB", 30}, {"T", 40},
      {"TB", 40}, {"TIB", 40}, {"S", 9},  // sectors, as qemu-img's size syntax lacks but dd has
  };
  auto it = shifts.find(suffix);
  if (it == shifts.end()) return std::nullopt;
  if (it->second > 0 && value > (UINT64_MAX >> it->second)) return std::nullopt;
  return value << it->second;
}

std::string human_size(uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

int usage_error(const std::string& message) {
  fprintf(stderr, "vixdisk: %s\nTry 'vixdisk --help'.\n", message.c_str());
  return kExitUsage;
}

int vix_error(const std::string& what, const vix::Error& error) {
  // The library's fixed text says what kind of failure, the message says where and why.
  std::string text(vix::base_error_text(error.code));
  if (!text.empty() && text.back() == '.') text.pop_back();
  if (!error.message.empty()) text += ": " + error.message;
  fprintf(stderr, "vixdisk: %s: %s (VixError %llu)\n", what.c_str(), text.c_str(),
          static_cast<unsigned long long>(error.code));
  return kExitVix;
}

int io_error(const std::string& what, int errno_value) {
  fprintf(stderr, "vixdisk: %s: %s\n", what.c_str(), strerror(errno_value));
  return kExitIo;
}

void set_verbose(bool on) {
  g_verbose = on;
}
bool verbose() {
  return g_verbose;
}
void note(const std::string& message) {
  if (g_verbose) fprintf(stderr, "vixdisk: %s\n", message.c_str());
}

// The library's own lines: info/debug only with -v (a tool's stderr is for what went wrong),
// warnings and panics always. Each arrives as a complete line.
void log_line(const char* fmt, va_list args) {
  if (!g_verbose) return;
  fputs("vixdisk: [lib] ", stderr);
  vfprintf(stderr, fmt, args);
}
void warn_line(const char* fmt, va_list args) {
  fputs("vixdisk: [lib] ", stderr);
  vfprintf(stderr, fmt, args);
}

Session::~Session() {
  disk_.reset();
  connection_.reset();
  if (library_) vix::Library::exit();
}

std::vector<OptionSpec> server_option_specs() {
  return {{"server", true, 0},        {"port", true, 0},       {"user", true, 0},
          {"password-file", true, 0}, {"thumbprint", true, 0}, {"name", true, 0}};
}

namespace {

bool read_password(const ParsedArgs& args, std::string* out, std::string* error) {
  const std::string file = args.get("password-file");
  if (!file.empty()) {
    FILE* f = fopen(file.c_str(), "re");
    if (!f) {
      *error = "password file " + file + ": " + strerror(errno);
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

bool server_spec(const ParsedArgs& args, vix::ConnectSpec* spec, std::string* error) {
  spec->server = args.get("server");
  if (spec->server.empty()) {
    *error = "needs --server HOST or URL";
    return false;
  }
  if (args.has("port")) {
    char* end = nullptr;
    const std::string p = args.get("port");
    const unsigned long v = strtoul(p.c_str(), &end, 10);
    if (p.empty() || *end || v == 0 || v > 65535) {
      *error = "--port " + p + ": expected 1..65535";
      return false;
    }
    spec->port = static_cast<uint32_t>(v);
  }
  spec->cred_type = VIXDISKLIB_CRED_UID;
  spec->user = args.get("user");
  spec->thumbprint = args.get("thumbprint");
  spec->config_scope = args.get("name");
  return spec->user.empty() || read_password(args, &spec->password, error);
}

vix::Result<std::shared_ptr<vix::ServerSession>> server_login(const vix::ConnectSpec& spec) {
  const vix::Config config = vix::Library::get()->config().scoped(
      spec.config_scope.empty() ? spec.server : spec.config_scope);
  return vix::ServerSession::login(spec, config);
}

const vix::vsphere::VirtualMachine* find_vm(const vix::vsphere::Inventory& inv,
                                            const std::string& wanted, std::string* error) {
  if (const auto* vm = inv.find_vm(wanted)) return vm;
  const vix::vsphere::VirtualMachine* found = nullptr;
  for (const auto& vm : inv.vms) {
    if (vm.name != wanted) continue;
    if (found) {
      *error = "more than one VM is named '" + wanted + "' (" + found->moref + ", " + vm.moref +
               "): give the moRef";
      return nullptr;
    }
    found = &vm;
  }
  if (!found) *error = "no VM with the moRef or name '" + wanted + "'";
  return found;
}

int Session::start(const GlobalOptions& options, bool read_only) {
  options_ = options;
  set_verbose(options.verbose);
  if (auto r = vix::Library::init({log_line, warn_line, warn_line}, "", options.config_file);
      !r.ok()) {
    return vix_error(options.config_file.empty() ? "init" : "init " + options.config_file,
                     r.error());
  }
  library_ = true;
  auto conn = vix::Connection::connect(vix::ConnectSpec{}, read_only, "", options.transports);
  if (!conn.ok()) return vix_error("connect", conn.error());
  connection_ = std::move(conn).value();
  return kExitOk;
}

int Session::open(const std::string& path, bool read_only) {
  uint32_t flags = 0;
  if (read_only) flags |= VIXDISKLIB_FLAG_OPEN_READ_ONLY;
  if (options_.single_link) flags |= VIXDISKLIB_FLAG_OPEN_SINGLE_LINK;
  if (options_.unbuffered) flags |= VIXDISKLIB_FLAG_OPEN_UNBUFFERED;
  auto disk = connection_->open(path, flags);
  if (!disk.ok()) return vix_error("open " + path, disk.error());
  disk_ = std::move(disk).value();
  note("opened " + path + " with transport " + std::string(disk_->transport_name()) + ", " +
       std::to_string(disk_->info().num_links) + " link(s)");
  return kExitOk;
}

vix::Result<void> AllocationCursor::load(uint64_t from) {
  window_start_ = from;
  window_end_ = from + std::min(kWindowSectors, capacity_ - from);
  index_ = 0;
  VIX_ASSIGN_OR_RETURN(extents_, device_.allocated(window_start_, window_end_ - window_start_));
  return vix::ok();
}

vix::Result<std::optional<vix::SectorExtent>> AllocationCursor::next(uint64_t from) {
  std::optional<vix::SectorExtent> found;
  while (from < capacity_) {
    if (from < window_start_ || from >= window_end_ || window_end_ == 0) VIX_TRY(load(from));
    while (index_ < extents_.size() && extents_[index_].start + extents_[index_].count <= from)
      ++index_;
    if (index_ == extents_.size()) {
      // Nothing more in this window: either an extent ended exactly at its edge (stop), or look
      // in the next window.
      if (found) return found;
      from = window_end_;
      continue;
    }
    vix::SectorExtent e = extents_[index_];
    uint64_t start = std::max(e.start, from);
    uint64_t end = e.start + e.count;
    if (found) {
      if (start != found->start + found->count) return found;
      found->count = end - found->start;
    } else {
      found = vix::SectorExtent{start, end - start};
    }
    from = end;
    if (end < window_end_) {
      // Merge extents that touch inside the window too.
      ++index_;
      while (index_ < extents_.size() && extents_[index_].start == found->start + found->count) {
        found->count = extents_[index_].start + extents_[index_].count - found->start;
        ++index_;
      }
      if (found->start + found->count < window_end_) return found;
      from = found->start + found->count;
    }
  }
  return found;
}

vix::Result<bool> AllocationCursor::any_allocated(uint64_t start, uint64_t end) {
  while (start < end) {
    if (start < window_start_ || start >= window_end_ || window_end_ == 0) VIX_TRY(load(start));
    while (index_ < extents_.size() && extents_[index_].start + extents_[index_].count <= start)
      ++index_;
    if (index_ < extents_.size() && extents_[index_].start < end) return true;
    if (index_ < extents_.size()) return false;  // next extent begins at or after end
    start = window_end_;
  }
  return false;
}

bool is_zero(const uint8_t* p, size_t n) {
  // Compare the buffer against itself shifted by one byte: memcmp is vectorised and this needs
  // no zero page of the same size.
  return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

}  // namespace vixdisk
