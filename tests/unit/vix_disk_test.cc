// vix::Disk and vix::Connection: async semantics and QueryAllocatedBlocks rules over an
// in-memory BlockDevice, then the real path (file transport, VMDK engine) against qemu fixtures.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <thread>

#include "support/fake_device.h"
#include "support/fixtures.h"
#include "transports/transport.h"
#include "vix/connection.h"
#include "vix/errors.h"
#include "vix/library.h"

namespace {

using namespace std::chrono_literals;
using vix::SectorExtent;

using vixtest::FakeDevice;

constexpr uint64_t kGrain = 16;

// A RAM disk that tracks allocation at 16-sector grains, as a sparse VMDK does.
std::unique_ptr<FakeDevice> mem_device(uint64_t sectors) {
  auto dev = std::make_unique<FakeDevice>(sectors * 512, "file");
  dev->set_allocation_grain(kGrain);
  return dev;
}

// Writes ones over [sector, sector+count), which allocates the grains it touches.
void allocate(FakeDevice& dev, uint64_t sector, uint64_t count) {
  std::vector<uint8_t> buf(count * 512, 1);
  ASSERT_TRUE(dev.write(sector, count, buf.data()).ok());
}

class VixDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(vix::Library::init({}, "", "").ok());
    auto dev = mem_device(4096);
    mem_ = dev.get();
    disk_ = std::make_unique<vix::Disk>(nullptr, "mem", 0, std::move(dev));
  }
  void TearDown() override {
    disk_.reset();
    vix::Library::exit();
  }
  FakeDevice* mem_ = nullptr;
  std::unique_ptr<vix::Disk> disk_;
};

TEST_F(VixDiskTest, AsyncCallbackRunsOnceOnAWorkerWithoutWait) {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  VixError result = VIX_E_FAIL;
  std::thread::id where;
  std::vector<uint8_t> buf(8 * 512);
  ASSERT_TRUE(disk_
                  ->read_async(0, 8, buf.data(),
                               [&](VixError r) {
                                 std::lock_guard lock(mu);
                                 ++calls;
                                 result = r;
                                 where = std::this_thread::get_id();
                                 cv.notify_all();
                               })
                  .ok());
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return calls > 0; }));
  lock.unlock();
  std::this_thread::sleep_for(20ms);  // a second call would show up here
  lock.lock();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(result, static_cast<VixError>(VIX_OK));
  EXPECT_NE(where, std::this_thread::get_id());
}

TEST_F(VixDiskTest, WaitReturnsAfterEveryCallbackReturned) {
  mem_->set_delay(5ms);
  std::atomic<int> returned{0};
  std::vector<std::vector<uint8_t>> bufs(20, std::vector<uint8_t>(512));
  for (auto& b : bufs) {
    ASSERT_TRUE(disk_
                    ->read_async(1, 1, b.data(),
                                 [&](VixError) {
                                   std::this_thread::sleep_for(2ms);
                                   returned.fetch_add(1);
                                 })
                    .ok());
  }
  disk_->wait();
  EXPECT_EQ(returned.load(), 20);
}

TEST_F(VixDiskTest, DestroyingTheDiskWaitsForItsIo) {
  mem_->set_delay(20ms);
  std::atomic<int> returned{0};
  std::vector<uint8_t> buf(512);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(disk_->read_async(0, 1, buf.data(), [&](VixError) { returned.fetch_add(1); }).ok());
  }
  disk_.reset();
  EXPECT_EQ(returned.load(), 4);
}

TEST_F(VixDiskTest, RejectedAsyncNeverCallsBack) {
  std::atomic<int> calls{0};
  std::vector<uint8_t> buf(512);
  auto r = disk_->read_async(4096, 1, buf.data(), [&](VixError) { calls++; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));
  auto r2 = disk_->read_async(4095, 2, buf.data(), [&](VixError) { calls++; });
  EXPECT_FALSE(r2.ok());
  auto r3 = disk_->read_async(~uint64_t{0}, 2, buf.data(), [&](VixError) { calls++; });
  EXPECT_FALSE(r3.ok());
  disk_->wait();
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(VixDiskTest, AsyncErrorReachesTheCallbackWithItsDetail) {
  mem_->fail_reads(0, 4096, VIX_E_DISK_INVAL, "mem: grain table 3 points past EOF");
  std::vector<uint8_t> buf(512);
  VixError got = VIX_OK;
  std::string text;
  ASSERT_TRUE(disk_
                  ->read_async(0, 1, buf.data(),
                               [&](VixError r) {
                                 got = r;
                                 text = vix::error_text(r);  // as nbdkit does, on this thread
                               })
                  .ok());
  disk_->wait();
  EXPECT_EQ(got, static_cast<VixError>(VIX_E_DISK_INVAL));
  EXPECT_NE(text.find("grain table 3"), std::string::npos) << text;
}

TEST_F(VixDiskTest, SyncReadWriteAndRanges) {
  std::vector<uint8_t> in(2 * 512, 0x5c), out(2 * 512);
  ASSERT_TRUE(disk_->write(100, 2, in.data()).ok());
  ASSERT_TRUE(disk_->read(100, 2, out.data()).ok());
  EXPECT_EQ(in, out);
  auto bad = disk_->read(4095, 2, out.data());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));
  EXPECT_TRUE(disk_->read(4096, 0, out.data()).ok());
}

TEST_F(VixDiskTest, ReadOnlyFlagRefusesWrites) {
  vix::Disk ro(nullptr, "mem-ro", VIXDISKLIB_FLAG_OPEN_READ_ONLY, mem_device(64));
  std::vector<uint8_t> buf(512);
  auto r = ro.write(0, 1, buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_FILE_READ_ONLY));
  EXPECT_FALSE(ro.write_async(0, 1, buf.data(), [](VixError) {}).ok());
  EXPECT_FALSE(ro.write_metadata("k", "v").ok());
}

TEST_F(VixDiskTest, QueryAllocatedArgumentRules) {
  auto code = [&](uint64_t s, uint64_t n, uint64_t c) {
    auto r = disk_->query_allocated(s, n, c);
    return r.ok() ? VixError{VIX_OK} : r.error().code;
  };
  EXPECT_EQ(code(0, 128, 64), static_cast<VixError>(VIX_E_INVALID_ARG));    // chunk < 128
  EXPECT_EQ(code(64, 128, 128), static_cast<VixError>(VIX_E_INVALID_ARG));  // start unaligned
  EXPECT_EQ(code(0, 200, 128), static_cast<VixError>(VIX_E_INVALID_ARG));   // length unaligned
  EXPECT_EQ(code(3968, 256, 128), static_cast<VixError>(VIX_E_DISK_OUTOFRANGE));
  EXPECT_EQ(code(0, 4096, 128), static_cast<VixError>(VIX_OK));
  EXPECT_EQ(code(0, 0, 128), static_cast<VixError>(VIX_OK));
  EXPECT_EQ(code(0, 4096, 384), static_cast<VixError>(VIX_E_INVALID_ARG));  // 4096 % 384
  // More than VIXDISKLIB_MAX_CHUNK_NUMBER chunks is refused before the range is looked at.
  uint64_t too_many = (uint64_t{VIXDISKLIB_MAX_CHUNK_NUMBER} + 1) * 128;
  EXPECT_EQ(code(0, too_many, 128), static_cast<VixError>(VIX_E_INVALID_ARG));
}

TEST_F(VixDiskTest, QueryAllocatedRoundsOutMergesAndClips) {
  allocate(*mem_, 16, 1);     // grain 16..31   -> chunk 0..127
  allocate(*mem_, 100, 40);   // grains 96..143 -> chunks 0..255
  allocate(*mem_, 1000, 1);   // grain 992..1007 -> chunk 896..1023
  allocate(*mem_, 3000, 16);  // grains 2992..3023 -> chunk 2944..3071
  auto r = disk_->query_allocated(0, 4096, 128);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (std::vector<SectorExtent>{{0, 256}, {896, 128}, {2944, 128}}));
  auto window = disk_->query_allocated(128, 896, 128);  // [128, 1024)
  ASSERT_TRUE(window.ok());
  EXPECT_EQ(*window, (std::vector<SectorExtent>{{128, 128}, {896, 128}}));
  auto big = disk_->query_allocated(0, 4096, 1024);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(*big, (std::vector<SectorExtent>{{0, 1024}, {2048, 1024}}));
}

// ---- the real path: local connection, file transport, VMDK engine, qemu fixtures -----------

class VixLocalDiskTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(vix::Library::init({}, "", "").ok()); }
  void TearDown() override { vix::Library::exit(); }
  vixtest::TempDir dir_;
};

TEST_F(VixLocalDiskTest, ConnectValidatesModesAndServer) {
  auto bad = vix::Connection::connect({}, true, "", "file:bogus");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, static_cast<VixError>(VIX_E_INVALID_ARG));
  EXPECT_NE(bad.error().message.find("bogus"), std::string::npos);
  // A remote connection logs in first: nothing listens on port 1.
  vix::ConnectSpec remote;
  remote.server = "127.0.0.1";
  remote.port = 1;
  auto r = vix::Connection::connect(remote, true, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, static_cast<VixError>(VIX_E_HOST_NETWORK_CONN_REFUSED))
      << r.error().message;
  auto local = vix::Connection::connect({}, true, "", "");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ((*local)->modes(), vix::known_transport_modes());
}

TEST_F(VixLocalDiskTest, OpenMissingDiskNamesIt) {
  auto conn = vix::Connection::connect({}, true, "", "");
  ASSERT_TRUE(conn.ok());
  auto d = (*conn)->open(dir_.file("missing.vmdk"), 0);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("missing.vmdk"), std::string::npos) << d.error().message;
  auto nbd_only = vix::Connection::connect({}, true, "", "nbd");
  ASSERT_TRUE(nbd_only.ok());
  auto d2 = (*nbd_only)->open(dir_.file("missing.vmdk"), 0);
  ASSERT_FALSE(d2.ok());
  EXPECT_NE(d2.error().message.find("nbd"), std::string::npos) << d2.error().message;
}

// Parses `qemu-img map --output=json` into data extents (sectors).
std::vector<SectorExtent> qemu_data_extents(const std::string& image) {
  std::string out =
      vixtest::run_ok("qemu-img map --output=json -f vmdk " + vixtest::sh_quote(image));
  std::vector<SectorExtent> v;
  size_t pos = 0;
  while ((pos = out.find("\"start\":", pos)) != std::string::npos) {
    uint64_t start = std::stoull(out.substr(pos + 8));
    size_t lp = out.find("\"length\":", pos);
    uint64_t length = std::stoull(out.substr(lp + 9));
    size_t eol = out.find('}', pos);
    bool data = out.substr(pos, eol - pos).find("\"data\": true") != std::string::npos;
    if (data) v.push_back({start / 512, length / 512});
    pos = eol;
  }
  return v;
}

TEST_F(VixLocalDiskTest, ReadsAndQueryAllocatedAgreeWithQemu) {
  std::string img = dir_.file("d.vmdk");
  vixtest::run_ok("qemu-img create -q -f vmdk " + vixtest::sh_quote(img) + " 16M");
  vixtest::run_ok(
      "qemu-io -f vmdk -c 'write -q -P 0x11 0 4k' -c 'write -q -P 0x22 1M 200k' "
      "-c 'write -q -P 0x33 15M 64k' " +
      vixtest::sh_quote(img));
  auto conn = vix::Connection::connect({}, true, "", "");
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open(img, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->transport_name(), "file");
  EXPECT_TRUE((*disk)->read_only());
  const uint64_t cap = (*disk)->info().capacity_sectors;
  ASSERT_EQ(cap, 32768u);

  auto raw = vixtest::qemu_raw(img);
  ASSERT_EQ(raw.size(), cap * 512);
  std::vector<uint8_t> buf(cap * 512);
  ASSERT_TRUE((*disk)->read(0, cap, buf.data()).ok());
  EXPECT_TRUE(buf == raw);

  for (uint64_t chunk : {128u, 256u, 2048u}) {
    auto got = (*disk)->query_allocated(0, cap / chunk * chunk, chunk);
    ASSERT_TRUE(got.ok()) << got.error().message;
    // Expected: qemu's data extents rounded out to chunks, merged.
    std::vector<SectorExtent> want;
    for (const SectorExtent& e : qemu_data_extents(img)) {
      uint64_t s = e.start / chunk * chunk, t = (e.start + e.count + chunk - 1) / chunk * chunk;
      if (!want.empty() && s <= want.back().start + want.back().count) {
        want.back().count = std::max(want.back().start + want.back().count, t) - want.back().start;
      } else {
        want.push_back({s, t - s});
      }
    }
    EXPECT_EQ(*got, want) << "chunk " << chunk;
    for (size_t i = 0; i < got->size(); ++i) {
      EXPECT_EQ((*got)[i].start % chunk, 0u);
      if (i > 0) {
        EXPECT_GT((*got)[i].start, (*got)[i - 1].start + (*got)[i - 1].count - 1);
      }
    }
  }
}

TEST_F(VixLocalDiskTest, ReadOnlyConnectionForcesReadOnlyOpen) {
  std::string img = dir_.file("ro.vmdk");
  vixtest::run_ok("qemu-img create -q -f vmdk " + vixtest::sh_quote(img) + " 1M");
  auto conn = vix::Connection::connect({}, true, "", "file");
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open(img, 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_TRUE((*disk)->read_only());
  std::vector<uint8_t> buf(512, 1);
  EXPECT_FALSE((*disk)->write(0, 1, buf.data()).ok());
  EXPECT_EQ((*conn)->open_disks(), 1);
  disk->reset();
  EXPECT_EQ((*conn)->open_disks(), 0);
}

TEST_F(VixLocalDiskTest, AsyncWritesLandAndQemuSeesThem) {
  std::string img = dir_.file("w.vmdk");
  vixtest::run_ok("qemu-img create -q -f vmdk " + vixtest::sh_quote(img) + " 4M");
  auto conn = vix::Connection::connect({}, false, "", "");
  ASSERT_TRUE(conn.ok());
  auto disk = (*conn)->open(img, 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> a(128 * 512, 0xa1), b(8 * 512, 0xb2);
  std::atomic<int> ok_calls{0};
  auto cb = [&](VixError r) {
    if (r == VIX_OK) ok_calls++;
  };
  ASSERT_TRUE((*disk)->write_async(0, 128, a.data(), cb).ok());
  ASSERT_TRUE((*disk)->write_async(4000, 8, b.data(), cb).ok());
  (*disk)->wait();
  EXPECT_EQ(ok_calls.load(), 2);
  ASSERT_TRUE((*disk)->flush().ok());
  disk->reset();
  auto raw = vixtest::qemu_raw(img);
  ASSERT_EQ(raw.size(), 4u << 20);
  EXPECT_TRUE(
      std::all_of(raw.begin(), raw.begin() + a.size(), [](uint8_t x) { return x == 0xa1; }));
  EXPECT_TRUE(std::all_of(raw.begin() + 4000 * 512, raw.begin() + 4008 * 512,
                          [](uint8_t x) { return x == 0xb2; }));
  EXPECT_EQ(raw[4008 * 512], 0);
  EXPECT_TRUE(vixtest::run("qemu-img check -f vmdk " + vixtest::sh_quote(img)).exit_code == 0);
}

}  // namespace
