// Every block-device decorator (MeteredDevice, ReadaheadDevice, hot-add's device) over a device
// that records its calls: each BlockDevice method called on the decorator reaches the device
// below, and what it answers comes back up. A decorator that forgot to pass a method on would
// answer with BlockDevice's default instead, unseen until a disk needed the method.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support/fake_device.h"
#include "transports/hotadd.h"
#include "vix/metered.h"
#include "vix/readahead.h"

namespace {

using vixtest::FakeDevice;
using vixtest::Op;

constexpr uint64_t kBytes = 4 << 20;

uint8_t pattern(uint64_t byte) {
  return static_cast<uint8_t>(byte * 13 + (byte >> 9) + 5);
}

struct Decorator {
  std::string name;
  std::function<std::unique_ptr<vix::BlockDevice>(std::unique_ptr<vix::BlockDevice>)> wrap;
  // Methods the decorator answers itself by design, and what the test checks instead.
  std::set<Op> answers_itself;
};

std::unique_ptr<vix::BlockDevice> readahead(std::unique_ptr<vix::BlockDevice> dev) {
  vix::ReadaheadOptions opt;
  opt.chunk_bytes = 256 << 10;
  return std::make_unique<vix::ReadaheadDevice>(std::move(dev), opt,
                                                std::make_shared<vix::CacheBudget>(8 << 20, 1));
}

std::vector<Decorator> decorators() {
  return {
      {"MeteredDevice",
       [](std::unique_ptr<vix::BlockDevice> d) -> std::unique_ptr<vix::BlockDevice> {
         return std::make_unique<vix::MeteredDevice>(std::move(d));
       },
       {}},
      // map_to_host answers from its chunks, loaded with read(): checked by bytes below.
      {"ReadaheadDevice", readahead, {Op::kMapToHost}},
      {"HotaddDevice",
       [](std::unique_ptr<vix::BlockDevice> d) {
         return vix::hotadd::attached_device(std::move(d), [] {});
       },
       {}},
      // As vix::Connection stacks them: the cache over the meter over the transport's device.
      {"ReadaheadDevice(MeteredDevice(HotaddDevice))",
       [](std::unique_ptr<vix::BlockDevice> d) {
         return readahead(std::make_unique<vix::MeteredDevice>(
             vix::hotadd::attached_device(std::move(d), [] {})));
       },
       {Op::kMapToHost}},
  };
}

// Calls `op` on `dev` with arguments the fake answers recognisably, and checks the answer is the
// fake's. Every Op has a case: -Wswitch fails the build when one is added without it.
void call_and_check(vix::BlockDevice& dev, Op op) {
  switch (op) {
    case Op::kCapacitySectors:
      EXPECT_EQ(dev.capacity_sectors(), kBytes / 512);
      return;
    case Op::kInfo:
      EXPECT_EQ(dev.info().capacity_sectors, kBytes / 512);
      return;
    case Op::kReadOnly:
      EXPECT_TRUE(dev.read_only());
      return;
    case Op::kTransportName:
      EXPECT_EQ(dev.transport_name(), "recorder");
      return;
    case Op::kRead: {
      std::vector<uint8_t> buf(4096);
      ASSERT_TRUE(dev.read(1000, 8, buf.data()).ok());
      for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], pattern(1000 * 512 + i)) << i;
      return;
    }
    case Op::kWrite: {
      std::vector<uint8_t> buf(1024, 0x42);
      ASSERT_TRUE(dev.write(3000, 2, buf.data()).ok());
      return;
    }
    case Op::kFlush:
      EXPECT_TRUE(dev.flush().ok());
      return;
    case Op::kUnmap:
      EXPECT_TRUE(dev.unmap(4000, 16).ok());
      return;
    case Op::kMapToHost: {
      std::vector<vix::HostPiece> pieces;
      auto r = dev.map_to_host(5000, 8, &pieces);
      ASSERT_TRUE(r.ok()) << r.error().message;
      if (!*r) {
        EXPECT_TRUE(pieces.empty());  // the fake's own answer: it cannot say
        return;
      }
      std::vector<uint8_t> got;
      for (const vix::HostPiece& p : pieces) {
        ASSERT_EQ(p.fd, -1);
        ASSERT_NE(p.mem, nullptr);
        got.insert(got.end(), p.mem, p.mem + p.bytes);
      }
      ASSERT_EQ(got.size(), 4096u);
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], pattern(5000 * 512 + i)) << i;
      return;
    }
    case Op::kAllocated: {
      auto r = dev.allocated(64, 32);
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(*r, (std::vector<vix::SectorExtent>{{64, 32}}));
      return;
    }
    case Op::kLinkCounters:
      EXPECT_EQ(dev.link_counters(), (vix::BlockDevice::LinkCounters{{"reconnects", 7}}));
      return;
    case Op::kProtocol:
      EXPECT_EQ(dev.protocol(), "fake");
      return;
    case Op::kMetadata: {
      auto r = dev.metadata();
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(r->at("ddb.recorder"), "yes");
      return;
    }
    case Op::kWriteMetadata:
      EXPECT_TRUE(dev.write_metadata("ddb.written", "through").ok());
      return;
  }
  ADD_FAILURE() << "no case for op " << static_cast<int>(op);
}

TEST(BlockDeviceWrapper, EveryMethodOfEveryDecoratorReachesTheDeviceBelow) {
  for (const Decorator& d : decorators()) {
    SCOPED_TRACE(d.name);
    auto fake = std::make_unique<FakeDevice>(kBytes, "recorder");
    FakeDevice* rec = fake.get();
    rec->fill(pattern);
    rec->set_read_only(true);  // not BlockDevice's default, so a default answer shows
    rec->set_reconnects(7);
    rec->set_discard(true);
    ASSERT_TRUE(rec->write_metadata("ddb.recorder", "yes").ok());
    std::unique_ptr<vix::BlockDevice> dev = d.wrap(std::move(fake));
    for (Op op : vixtest::kAllOps) {
      SCOPED_TRACE(vixtest::op_name(op));
      const uint64_t before = rec->count(op);
      ASSERT_NO_FATAL_FAILURE(call_and_check(*dev, op));
      if (d.answers_itself.count(op) != 0) continue;
      EXPECT_GT(rec->count(op), before) << "not passed on to the device below";
    }
    // What was passed on arrived as it was sent.
    const auto writes = rec->calls(Op::kWrite);
    ASSERT_FALSE(writes.empty());
    EXPECT_EQ(writes.back().sector, 3000u);
    EXPECT_EQ(writes.back().count, 2u);
    EXPECT_EQ(rec->bytes(3000 * 512, 1024), std::vector<uint8_t>(1024, 0x42));
    const auto unmaps = rec->calls(Op::kUnmap);
    ASSERT_EQ(unmaps.size(), 1u);
    EXPECT_EQ(unmaps[0].sector, 4000u);
    EXPECT_EQ(unmaps[0].count, 16u);
    EXPECT_EQ(rec->metadata()->count("ddb.written"), 1u);
  }
}

// The read-ahead cache answers map_to_host from its chunks, so the pieces are the device's bytes
// read through read(), never its map_to_host.
TEST(BlockDeviceWrapper, ReadaheadMapsFromChunksItReadBelow) {
  auto fake = std::make_unique<FakeDevice>(kBytes, "recorder");
  FakeDevice* rec = fake.get();
  rec->fill(pattern);
  auto dev = readahead(std::move(fake));
  std::vector<vix::HostPiece> pieces;
  auto r = dev->map_to_host(5000, 8, &pieces);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(*r);
  EXPECT_EQ(rec->count(Op::kMapToHost), 0u);
  EXPECT_GE(rec->count(Op::kRead), 1u);
  ASSERT_NO_FATAL_FAILURE(call_and_check(*dev, Op::kMapToHost));
}

// Hot-add's device adds one thing: on close, the device below is closed first, then the disk is
// detached, once.
TEST(BlockDeviceWrapper, HotaddDetachesOnceAfterClosingTheDevice) {
  std::vector<std::string> events;
  auto fake = std::make_unique<FakeDevice>(kBytes, "hotadd");
  fake->on_destroy([&] { events.push_back("closed"); });
  auto dev = vix::hotadd::attached_device(std::move(fake), [&] { events.push_back("detached"); });
  EXPECT_EQ(dev->transport_name(), "hotadd");
  EXPECT_TRUE(events.empty());
  dev.reset();
  EXPECT_EQ(events, (std::vector<std::string>{"closed", "detached"}));
}

}  // namespace
