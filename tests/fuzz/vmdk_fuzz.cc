// libFuzzer target for the VMDK engine: vmdk::open, a few reads and allocated() over files held
// in memory (memory_source.h), never real files.
//
// Input framing, so one input can be a whole multi-file disk (descriptor + extents + parents):
//   - input starting with "VXFZ": a sequence of [u8 name length][name][u32 LE data length][data]
//     records; the first record is the disk that is opened. Truncated records are cut short.
//   - anything else: the whole input is the single file "disk.vmdk" (qemu-img-made
//     monolithicSparse / streamOptimized images work directly as seeds).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "memory_source.h"
#include "vmdk/vmdk.h"

namespace {

constexpr uint64_t kSectorsPerRead = 128;
// allocated() is asked about the first 1 GiB only: beyond that a hostile GD that repeats one GT
// yields millions of extents, which is a throughput problem for the fuzzer, not a finding.
constexpr uint64_t kAllocatedWindow = uint64_t{1} << 21;

std::string load(vixfuzz::MemoryOpener& opener, const uint8_t* data, size_t size) {
  if (size < 4 || std::string(reinterpret_cast<const char*>(data), 4) != "VXFZ") {
    opener.add("disk.vmdk", std::vector<uint8_t>(data, data + size));
    return "disk.vmdk";
  }
  std::string first;
  size_t pos = 4;
  while (pos < size) {
    size_t name_len = data[pos++];
    if (name_len == 0 || pos + name_len > size) break;
    std::string name(reinterpret_cast<const char*>(data + pos), name_len);
    pos += name_len;
    if (pos + 4 > size) break;
    uint64_t len = uint64_t{data[pos]} | uint64_t{data[pos + 1]} << 8 |
                   uint64_t{data[pos + 2]} << 16 | uint64_t{data[pos + 3]} << 24;
    pos += 4;
    if (len > size - pos) len = size - pos;
    opener.add(name, std::vector<uint8_t>(data + pos, data + pos + len));
    pos += len;
    if (first.empty()) first = name;
  }
  return first;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vixfuzz::MemoryOpener opener;
  std::string path = load(opener, data, size);
  if (path.empty()) return 0;
  vix::vmdk::OpenOptions options;
  options.read_only = true;
  auto disk = vix::vmdk::open(opener, path, options);
  if (!disk.ok()) return 0;
  vix::BlockDevice& d = **disk;
  const uint64_t cap = d.capacity_sectors();
  (void)d.info();
  std::vector<uint8_t> buf(kSectorsPerRead * 512);
  // First grains, the middle, the last sectors, and one read straddling nothing in particular.
  const uint64_t starts[] = {0, kSectorsPerRead, cap / 2, cap > 7 ? cap - 7 : 0, 12345};
  for (uint64_t s : starts) {
    if (s >= cap) continue;
    uint64_t n = std::min<uint64_t>(kSectorsPerRead, cap - s);
    (void)d.read(s, n, buf.data());
  }
  (void)d.read(cap, 1, buf.data());  // out of range: must be an error, not a read
  auto allocated = d.allocated(0, std::min(cap, kAllocatedWindow));
  if (allocated.ok()) {
    // The contract: sorted, non-overlapping, inside the asked range.
    uint64_t end = 0;
    for (const auto& e : *allocated) {
      if (e.start < end || e.count == 0 || e.start + e.count > std::min(cap, kAllocatedWindow))
        __builtin_trap();
      end = e.start + e.count;
    }
  }
  (void)d.metadata();
  return 0;
}
