#include "tools/progress.h"

#include <unistd.h>

#include <cstdio>

namespace vixdisk {

Progress::Progress(std::string label, uint64_t total)
    : label_(std::move(label)), total_(total), enabled_(isatty(STDERR_FILENO) == 1) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  finish();
}

void Progress::update(uint64_t done) {
  last_done_ = done;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(done);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(last_done_);
  fputc('\n', stderr);
}

void Progress::draw(uint64_t done) {
  constexpr int kWidth = 30;
  const double frac = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(frac * kWidth);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double mbs = secs > 0 ? static_cast<double>(done) / 1e6 / secs : 0;
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = 0;
  fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MB/s", label_.c_str(), bar, frac * 100, mbs);
  fflush(stderr);
}

}  // namespace vixdisk
