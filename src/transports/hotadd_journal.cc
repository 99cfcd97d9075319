#include "transports/hotadd_journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace vix::hotadd {

namespace {

constexpr const char* kHeader = "vixfs-hotadd-journal 1";
// Far more than any proxy can hold (a few controllers of 15 units); a bigger file is not ours.
constexpr size_t kMaxJournalBytes = 1 << 20;

std::string errno_text(int e) {
  return std::strerror(e);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool parse_i32(const std::string& s, int32_t* out) {
  bool neg = !s.empty() && s[0] == '-';
  uint64_t v = 0;
  if (!parse_u64(neg ? s.substr(1) : s, &v)) return false;
  if (v > (neg ? uint64_t{2147483648u} : uint64_t{2147483647u})) return false;
  *out = neg ? static_cast<int32_t>(-static_cast<int64_t>(v)) : static_cast<int32_t>(v);
  return true;
}

bool field_safe(const std::string& s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return c == '\t' || c == '\n' || c == '\0'; });
}

Result<std::string> read_all(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::string();
    return fail(VIX_E_FILE_ACCESS_ERROR, "hotadd journal " + path + ": " + errno_text(errno));
  }
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(VIX_E_FILE_ERROR, "hotadd journal " + path + ": " + errno_text(errno));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxJournalBytes) {
      return fail(VIX_E_FILE_TOO_BIG, "hotadd journal " + path + ": larger than " +
                                          std::to_string(kMaxJournalBytes) + " bytes");
    }
  }
  return out;
}

Result<void> write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(VIX_E_FILE_ERROR, "hotadd journal " + path + ": " + errno_text(errno));
    done += static_cast<size_t>(n);
  }
  return ok();
}

}  // namespace

ProcessId self_process() {
  static const ProcessId self = [] {
    ProcessId p;
    p.pid = ::getpid();
    auto st = process_start_time(p.pid);
    p.start_time = st.ok() ? *st : 0;
    return p;
  }();
  // After fork() the cached value belongs to the parent.
  if (self.pid != ::getpid()) {
    ProcessId p;
    p.pid = ::getpid();
    auto st = process_start_time(p.pid);
    p.start_time = st.ok() ? *st : 0;
    return p;
  }
  return self;
}

Result<uint64_t> process_start_time(pid_t pid) {
  if (pid <= 0) return fail(VIX_E_INVALID_ARG, "process id " + std::to_string(pid));
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  VIX_ASSIGN_OR_RETURN(std::string stat, read_all(path));
  if (stat.empty()) return fail(VIX_E_NOT_FOUND, "process " + std::to_string(pid) + " is gone");
  // comm (field 2) may hold spaces and parentheses; the fields after it start past the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return fail(VIX_E_FILE_ERROR, path + ": no ')' in it");
  size_t pos = close + 1;
  // Field 3 is the first after ')'; field 22 is the 20th.
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    while (pos < stat.size() && stat[pos] == ' ') ++pos;
    const size_t end = stat.find(' ', pos);
    field = stat.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (end == std::string::npos && i < 22) return fail(VIX_E_FILE_ERROR, path + ": too short");
    pos = end;
  }
  uint64_t v = 0;
  if (!parse_u64(field, &v))
    return fail(VIX_E_FILE_ERROR, path + ": bad starttime '" + field + "'");
  return v;
}

bool process_alive(const ProcessId& p) {
  if (p.pid <= 0) return false;
  auto st = process_start_time(p.pid);
  return st.ok() && *st == p.start_time;
}

std::string server_key(const std::string& server, uint32_t port) {
  std::string host = server;
  uint32_t url_port = 0;
  if (size_t p = host.find("://"); p != std::string::npos) host.erase(0, p + 3);
  if (size_t p = host.find('/'); p != std::string::npos) host.erase(p);
  if (size_t p = host.rfind('@'); p != std::string::npos) host.erase(0, p + 1);
  std::string port_text;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close != std::string::npos) {
      if (close + 1 < host.size() && host[close + 1] == ':') port_text = host.substr(close + 2);
      host = host.substr(0, close + 1);
    }
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    port_text = host.substr(host.find(':') + 1);
    host.erase(host.find(':'));
  }
  uint64_t v = 0;
  if (parse_u64(port_text, &v) && v > 0 && v < 65536) url_port = static_cast<uint32_t>(v);
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const uint32_t effective = port != 0 ? port : (url_port != 0 ? url_port : 443);
  return host + ":" + std::to_string(effective);
}

std::string journal_dir(const Config& config) {
  std::string dir = config.get(kTmpDirectory);
  if (dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    dir = t && *t ? t : "/tmp";
  }
  return dir;
}

std::string new_entry_id() {
  static std::atomic<uint64_t> seq{0};
  const ProcessId self = self_process();
  return std::to_string(self.pid) + "." + std::to_string(self.start_time) + "." +
         std::to_string(++seq);
}

Journal::Journal(std::string dir) : dir_(std::move(dir)) {
  const std::string base = dir_ + "/vixfs-hotadd-" + std::to_string(::geteuid());
  path_ = base + ".journal";
  lock_path_ = base + ".lock";
}

std::string Journal::format(const std::vector<JournalEntry>& entries) {
  std::string out = std::string(kHeader) + "\n";
  for (const JournalEntry& e : entries) {
    out += e.id + "\t" + e.server + "\t" + e.proxy + "\t" + std::to_string(e.device_key) + "\t" +
           std::to_string(e.controller_key) + "\t" + std::to_string(e.unit) + "\t" +
           std::to_string(e.owner.pid) + "\t" + std::to_string(e.owner.start_time) + "\t" + e.file +
           "\n";
  }
  return out;
}

Result<std::vector<JournalEntry>> Journal::parse(const std::string& text,
                                                 const std::string& origin) {
  std::vector<JournalEntry> out;
  if (text.empty()) return out;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    const std::string where = origin + " line " + std::to_string(line_no);
    if (line_no == 1) {
      if (line != kHeader) {
        return fail(VIX_E_FILE_ERROR,
                    where + ": not a vixfs hot-add journal (expected \"" + kHeader + "\")");
      }
      continue;
    }
    if (line.empty()) continue;
    std::vector<std::string> f;
    size_t p = 0;
    while (f.size() < 8) {
      const size_t tab = line.find('\t', p);
      if (tab == std::string::npos) break;
      f.push_back(line.substr(p, tab - p));
      p = tab + 1;
    }
    if (f.size() != 8) return fail(VIX_E_FILE_ERROR, where + ": expected 9 tab-separated fields");
    f.push_back(line.substr(p));
    JournalEntry e;
    e.id = f[0];
    e.server = f[1];
    e.proxy = f[2];
    e.file = f[8];
    uint64_t pid = 0;
    if (e.id.empty() || e.server.empty() || e.proxy.empty() || e.file.empty() ||
        !parse_i32(f[3], &e.device_key) || !parse_i32(f[4], &e.controller_key) ||
        !parse_i32(f[5], &e.unit) || !parse_u64(f[6], &pid) || pid > INT32_MAX ||
        !parse_u64(f[7], &e.owner.start_time)) {
      return fail(VIX_E_FILE_ERROR, where + ": malformed entry");
    }
    e.owner.pid = static_cast<pid_t>(pid);
    out.push_back(std::move(e));
  }
  return out;
}

Result<void> Journal::transact(
    const std::function<Result<bool>(std::vector<JournalEntry>&)>& edit) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  Fd lock(::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lock.get() < 0) {
    return fail(VIX_E_FILE_ACCESS_ERROR,
                "hotadd journal lock " + lock_path_ + ": " + errno_text(errno));
  }
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) {
      return fail(VIX_E_FILE_ERROR, "hotadd journal lock " + lock_path_ + ": " + errno_text(errno));
    }
  }
  // The lock is released when `lock` closes.
  VIX_ASSIGN_OR_RETURN(std::string text, read_all(path_));
  VIX_ASSIGN_OR_RETURN(std::vector<JournalEntry> entries, parse(text, path_));
  VIX_ASSIGN_OR_RETURN(bool changed, edit(entries));
  if (!changed) return ok();
  // One entry per line, tab-separated: a field holding either would corrupt every entry after it.
  for (const JournalEntry& e : entries) {
    for (const std::string* s : {&e.id, &e.server, &e.proxy, &e.file}) {
      if (s->empty() || !field_safe(*s)) {
        return fail(VIX_E_INVALID_ARG,
                    "hotadd journal: empty field or tab/newline in \"" + s->substr(0, 64) + "\"");
      }
    }
  }

  const std::string tmp = path_ + ".new";
  {
    Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (out.get() < 0) {
      return fail(VIX_E_FILE_ACCESS_ERROR, "hotadd journal " + tmp + ": " + errno_text(errno));
    }
    VIX_TRY(write_all(out.get(), format(entries), tmp));
    if (::fsync(out.get()) != 0) {
      return fail(VIX_E_FILE_ERROR, "hotadd journal " + tmp + ": fsync: " + errno_text(errno));
    }
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return fail(VIX_E_FILE_ERROR, "hotadd journal " + path_ + ": rename: " + errno_text(errno));
  }
  // The rename itself is durable only once the folder is.
  Fd d(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() < 0 || ::fsync(d.get()) != 0) {
    return fail(VIX_E_FILE_ERROR,
                "hotadd journal folder " + dir_ + ": fsync: " + errno_text(errno));
  }
  return ok();
}

Result<void> Journal::add(const JournalEntry& entry) {
  return transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    all.push_back(entry);
    return true;
  });
}

Result<void> Journal::set_device_key(const std::string& id, int32_t key) {
  return transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    for (JournalEntry& e : all) {
      if (e.id == id) {
        e.device_key = key;
        return true;
      }
    }
    return fail(VIX_E_NOT_FOUND, "hotadd journal " + path_ + ": entry " + id + " is gone");
  });
}

Result<void> Journal::abandon(const std::string& id) {
  return transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    for (JournalEntry& e : all) {
      if (e.id == id) {
        e.owner = ProcessId{};
        return true;
      }
    }
    return false;
  });
}

Result<void> Journal::remove(const std::string& id) {
  return transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    auto it =
        std::remove_if(all.begin(), all.end(), [&](const JournalEntry& e) { return e.id == id; });
    if (it == all.end()) return false;
    all.erase(it, all.end());
    return true;
  });
}

Result<std::vector<JournalEntry>> Journal::entries() {
  std::vector<JournalEntry> out;
  VIX_TRY(transact([&](std::vector<JournalEntry>& all) -> Result<bool> {
    out = all;
    return false;
  }));
  return out;
}

}  // namespace vix::hotadd
