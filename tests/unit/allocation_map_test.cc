// vix::AllocationMap: learned from a device, grown by writes, answering SEEK_DATA / SEEK_HOLE.
#include "vix/allocation_map.h"

#include <gtest/gtest.h>

#include <string_view>

namespace {

using vix::AllocationMap;
using vix::SectorExtent;

// Answers allocated() with fixed extents, in the order given (possibly unsorted), or fails.
class ExtentsDevice final : public vix::BlockDevice {
 public:
  ExtentsDevice(uint64_t capacity, std::vector<SectorExtent> extents, bool fail = false)
      : capacity_(capacity), extents_(std::move(extents)), fail_(fail) {}
  uint64_t capacity_sectors() const override { return capacity_; }
  vix::DiskInfo info() const override { return {}; }
  bool read_only() const override { return true; }
  std::string_view transport_name() const override { return "test"; }
  vix::Result<void> read(uint64_t, uint64_t, uint8_t*) override { return vix::ok(); }
  vix::Result<void> write(uint64_t, uint64_t, const uint8_t*) override { return vix::ok(); }
  vix::Result<void> flush() override { return vix::ok(); }
  vix::Result<std::vector<SectorExtent>> allocated(uint64_t sector, uint64_t count) override {
    ++calls;
    if (fail_) return vix::fail(VIX_E_FAIL, "no map today");
    std::vector<SectorExtent> out;
    for (const SectorExtent& e : extents_) {
      const uint64_t s = std::max(e.start, sector);
      const uint64_t t = std::min(e.start + e.count, sector + count);
      if (s < t) out.push_back({s, t - s});
    }
    return out;
  }
  int calls = 0;

 private:
  uint64_t capacity_;
  std::vector<SectorExtent> extents_;
  bool fail_;
};

TEST(AllocationMap, LearnsSortedMergedExtents) {
  ExtentsDevice dev(4096, {{1000, 10}, {0, 8}, {8, 8}, {1005, 20}, {2000, 0}});
  auto map = AllocationMap::learn(dev, 4096);
  ASSERT_TRUE(map.ok()) << map.error().message;
  EXPECT_EQ(map->extents(), (std::vector<SectorExtent>{{0, 16}, {1000, 25}}));
  EXPECT_EQ(map->allocated_sectors(), 41u);
}

TEST(AllocationMap, AsksAHugeDiskInWindows) {
  const uint64_t four_tib = uint64_t{4} << 31;  // sectors
  ExtentsDevice dev(four_tib, {{(uint64_t{1} << 31) - 8, 16}});
  auto map = AllocationMap::learn(dev, four_tib);
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(dev.calls, 4);
  // The extent crossing a window boundary comes back in two pieces and is merged again.
  EXPECT_EQ(map->extents(), (std::vector<SectorExtent>{{(uint64_t{1} << 31) - 8, 16}}));
}

TEST(AllocationMap, AFailureNamesTheOffset) {
  ExtentsDevice dev(4096, {}, /*fail=*/true);
  auto map = AllocationMap::learn(dev, 4096);
  ASSERT_FALSE(map.ok());
  EXPECT_NE(map.error().message.find("at offset 0"), std::string::npos);
  EXPECT_NE(map.error().message.find("no map today"), std::string::npos);
}

TEST(AllocationMap, MarkWidensToGrainsAndMerges) {
  ExtentsDevice dev(1024, {{512, 128}});
  auto map = AllocationMap::learn(dev, 1024);
  ASSERT_TRUE(map.ok());
  map->mark(130, 1);  // grain [128, 256)
  EXPECT_EQ(map->extents(), (std::vector<SectorExtent>{{128, 128}, {512, 128}}));
  map->mark(300, 300);  // grains [256, 640) join both neighbours
  EXPECT_EQ(map->extents(), (std::vector<SectorExtent>{{128, 512}}));
  EXPECT_EQ(map->allocated_sectors(), 512u);
  map->mark(1000, 100);  // clipped at the capacity
  EXPECT_EQ(map->extents().back(), (SectorExtent{896, 128}));
  map->mark(5000, 10);  // past the end: nothing
  EXPECT_EQ(map->allocated_sectors(), 640u);
}

TEST(AllocationMap, SeeksDataAndHoles) {
  ExtentsDevice dev(100, {{10, 10}, {50, 10}});
  auto map = AllocationMap::learn(dev, 100);
  ASSERT_TRUE(map.ok());
  const uint64_t size = 100 * 512;
  EXPECT_EQ(map->next_data(0, size), 10u * 512);
  EXPECT_EQ(map->next_data(10 * 512 + 7, size), 10u * 512 + 7);
  EXPECT_EQ(map->next_data(20 * 512, size), 50u * 512);
  EXPECT_EQ(map->next_data(60 * 512, size), std::nullopt);
  EXPECT_EQ(map->next_hole(0, size), 0u);
  EXPECT_EQ(map->next_hole(12 * 512, size), 20u * 512);
  EXPECT_EQ(map->next_hole(70 * 512, size), 70u * 512);
  auto all = AllocationMap::everything(100);
  EXPECT_EQ(all.next_data(99 * 512, size), 99u * 512);
  EXPECT_EQ(all.next_hole(0, size), size);  // the end of the file is the only hole
}

}  // namespace
