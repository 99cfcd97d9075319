// vixdisk bench: sequential read throughput over the whole disk and random 4 KiB read IOPS,
// both through the library's synchronous read path (what a VDDK client would see).
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "tools/cli.h"
#include "tools/progress.h"

namespace vixdisk {

int cmd_bench(const std::vector<std::string>& args) {
  std::string error;
  auto parsed = parse_args(
      args, {{"block-size", true, 0}, {"random-count", true, 0}, {"json", false, 0}}, &error);
  if (!parsed) return usage_error(error);
  if (parsed->positional.size() != 1) return usage_error("bench needs exactly one DISK");
  const std::string& path = parsed->positional[0];
  uint64_t block_size = kMiB, random_count = 10000;
  if (parsed->has("block-size")) {
    auto v = parse_size(parsed->get("block-size"));
    if (!v || *v == 0 || *v % vix::kSectorSize != 0 || *v > 256 * kMiB)
      return usage_error("--block-size must be a multiple of 512 up to 256M");
    block_size = *v;
  }
  if (parsed->has("random-count")) {
    const std::string s = parsed->get("random-count");
    auto v = parse_size(s);
    if (!v || s.find_first_not_of("0123456789") != std::string::npos || *v > 100'000'000)
      return usage_error("bad --random-count '" + s + "'");
    random_count = *v;
  }

  Session session;
  if (int rc = session.start(global_options(*parsed), true); rc != kExitOk) return rc;
  if (int rc = session.open(path, true); rc != kExitOk) return rc;
  vix::Disk& disk = session.disk();
  const uint64_t sectors = disk.info().capacity_sectors;
  const uint64_t per_block = block_size / vix::kSectorSize;
  std::vector<uint8_t> buf(block_size);
  using clock = std::chrono::steady_clock;

  auto t0 = clock::now();
  {
    Progress progress("sequential read", sectors * vix::kSectorSize);
    for (uint64_t s = 0; s < sectors; s += per_block) {
      const uint64_t n = std::min(per_block, sectors - s);
      if (auto r = disk.read(s, n, buf.data()); !r.ok())
        return vix_error("read " + path, r.error());
      progress.update((s + n) * vix::kSectorSize);
    }
  }
  const double seq_s = std::chrono::duration<double>(clock::now() - t0).count();
  const double seq_bytes = static_cast<double>(sectors * vix::kSectorSize);
  const double seq_mbs = seq_s > 0 ? seq_bytes / 1e6 / seq_s : 0;

  // Random 4 KiB reads at 4 KiB-aligned offsets; a fixed seed makes runs comparable.
  constexpr uint64_t kRandomSectors = 8;
  const uint64_t slots = sectors / kRandomSectors;
  std::mt19937_64 rng(42);
  t0 = clock::now();
  uint64_t done = 0;
  if (slots > 0) {
    std::uniform_int_distribution<uint64_t> pick(0, slots - 1);
    for (; done < random_count; ++done) {
      if (auto r = disk.read(pick(rng) * kRandomSectors, kRandomSectors, buf.data()); !r.ok())
        return vix_error("read " + path, r.error());
    }
  }
  const double rnd_s = std::chrono::duration<double>(clock::now() - t0).count();
  const double iops = rnd_s > 0 ? static_cast<double>(done) / rnd_s : 0;

  if (parsed->has("json")) {
    printf(
        "{\"disk\": %s, \"capacity_bytes\": %llu, \"block_size\": %llu, \"sequential_seconds\": "
        "%.6f, \"sequential_mb_per_s\": %.1f, \"random_reads\": %llu, \"random_seconds\": %.6f, "
        "\"random_iops\": %.0f}\n",
        json_string(path).c_str(), static_cast<unsigned long long>(sectors * vix::kSectorSize),
        static_cast<unsigned long long>(block_size), seq_s, seq_mbs,
        static_cast<unsigned long long>(done), rnd_s, iops);
  } else {
    printf("sequential read: %s in %.3f s = %.1f MB/s (%s requests)\n",
           human_size(sectors * vix::kSectorSize).c_str(), seq_s, seq_mbs,
           human_size(block_size).c_str());
    printf("random read:     %llu x 4 KiB in %.3f s = %.0f IOPS\n",
           static_cast<unsigned long long>(done), rnd_s, iops);
  }
  return kExitOk;
}

}  // namespace vixdisk
