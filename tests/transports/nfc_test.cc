// nbd and nbdssl as VMware's NFC (src/nfc/, src/transports/nfc_device.cc), against the
// simulator's NfcService and its NFC test server (tests/vcsim, `-nfc`), whose disk bytes come from
// qemu-nbd: every sample disk (all formats, the delta chain, the 64 GiB sparse disk) equals
// qemu-img's bytes; compression, fragment order and sizes; writes with a read-write ticket; each
// fault of the server an error naming the host, the step and the server's words, or a retry that
// ends with the right bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "support/disk_read.h"
#include "support/fixtures.h"
#include "support/process.h"
#include "support/sample_disks.h"
#include "support/vsphere_sim.h"
#include "vix/connection.h"
#include "vix/library.h"
#include "vsphere/client.h"
#include "vsphere/nfc_ticket.h"

using vixtest::run;
using vixtest::run_ok;
using vixtest::sh_quote;
using vixtest::Simulator;
using vixtest::TempDir;

namespace {

using vixtest::SampleDisk;

class NfcTransport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    samples_ = new TempDir();
    sim_ = Simulator::start_with_samples(samples_->path(), 64, "-user u:p -nfc", &error_).release();
    if (sim_ == nullptr) return;
    disks_ = new std::vector<SampleDisk>(vixtest::sample_disks(*sim_, &error_));
  }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
    delete samples_;
    samples_ = nullptr;
    delete disks_;
    disks_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(sim_, nullptr) << error_;
    ASSERT_NE(disks_, nullptr) << error_;
    ASSERT_GE(disks_->size(), 7u) << "the samples' disks, current and in snapshots";
    std::string err;
    ASSERT_TRUE(sim_->set_nfc_faults("", &err)) << err;
    init({});
  }
  void TearDown() override { vix::Library::exit(); }

  static void init(std::map<std::string, std::string> keys) {
    vix::Library::exit();
    auto r = vix::Library::init({}, "", "", [keys](vix::Config& c) {
      for (const auto& [k, v] : keys) c.set(k, v, "test");
    });
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  static void faults(const std::string& text) {
    std::string err;
    ASSERT_TRUE(sim_->set_nfc_faults(text, &err)) << err;
  }

  static const SampleDisk& disk_named(const std::string& local_suffix, bool current = true) {
    for (const auto& d : *disks_) {
      if (d.local.size() >= local_suffix.size() &&
          d.local.compare(d.local.size() - local_suffix.size(), local_suffix.size(),
                          local_suffix) == 0 &&
          d.snapshot.empty() == current) {
        return d;
      }
    }
    ADD_FAILURE() << "no sample disk " << local_suffix;
    static SampleDisk none;
    return none;
  }

  static vix::Result<std::unique_ptr<vix::Connection>> connect(const SampleDisk& d,
                                                               const std::string& modes,
                                                               bool read_only = true) {
    return vix::Connection::connect(sim_->connect_spec(d.vm), read_only, d.snapshot, modes);
  }

  static TempDir* samples_;
  static Simulator* sim_;
  static std::vector<SampleDisk>* disks_;
  static std::string error_;
};
TempDir* NfcTransport::samples_ = nullptr;
Simulator* NfcTransport::sim_ = nullptr;
std::vector<SampleDisk>* NfcTransport::disks_ = nullptr;
std::string NfcTransport::error_;

// qemu-img's bytes of [offset, offset + len) of a disk, through a sparse raw copy.
std::vector<uint8_t> qemu_range(const std::string& image, uint64_t offset, size_t len) {
  TempDir tmp;
  run_ok("qemu-img convert -U -O raw " + sh_quote(image) + " " + sh_quote(tmp.file("raw")));
  std::vector<uint8_t> out(len);
  std::ifstream f(tmp.file("raw"), std::ios::binary);
  f.seekg(std::streamoff(offset));
  f.read(reinterpret_cast<char*>(out.data()), std::streamsize(len));
  return out;
}

vix::vsphere::NfcTicketRequest ro_request(const std::string& vm) {
  vix::vsphere::NfcTicketRequest r;
  r.vm = vm;
  return r;
}

}  // namespace

TEST_F(NfcTransport, EverySampleDiskOverNbdAndNbdsslEqualsQemu) {
  for (const std::string mode : {"nbd", "nbdssl"}) {
    for (const SampleDisk& d : *disks_) {
      if (d.capacity > (1ull << 30)) continue;  // the 64 GiB disk: its own test
      SCOPED_TRACE(mode + " " + d.datastore_path + " " + d.snapshot);
      auto conn = connect(d, mode);
      ASSERT_TRUE(conn.ok()) << conn.error().message;
      auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
      ASSERT_TRUE(disk.ok()) << disk.error().message;
      EXPECT_EQ((*disk)->transport_name(), mode);
      const auto want = vixtest::qemu_raw(d.local);
      ASSERT_EQ((*disk)->info().capacity_sectors * 512, want.size());
      EXPECT_TRUE(vixtest::read_all(**disk) == want);
    }
  }
  EXPECT_NE(sim_->nfc_log().find("vpxa-nfcssl"), std::string::npos) << sim_->nfc_log();
}

TEST_F(NfcTransport, SixtyFourGiBSparseDiskReadsItsDataAndHolesAndReportsAllocation) {
  const SampleDisk& d = disk_named("DC0_C0_RP0_VM1/disk1.vmdk");
  auto conn = connect(d, "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  ASSERT_EQ((*disk)->info().capacity_sectors, (64ull << 30) / 512);
  TempDir tmp;
  run_ok("qemu-img convert -U -O raw " + sh_quote(d.local) + " " + sh_quote(tmp.file("raw")));
  std::ifstream raw(tmp.file("raw"), std::ios::binary);
  // The written areas of scripts/sample-vms, a hole, and the last sector.
  const std::pair<uint64_t, uint64_t> ranges[] = {{0, 4u << 20},
                                                  {(2047ull << 20) - 4096, (2u << 20) + 8192},
                                                  {33000ull << 20, 3u << 20},
                                                  {40ull << 30, 1u << 20},
                                                  {(64ull << 30) - 512, 512}};
  for (auto [off, len] : ranges) {
    SCOPED_TRACE(off);
    std::vector<uint8_t> got(len), want(len);
    raw.seekg(std::streamoff(off));
    raw.read(reinterpret_cast<char*>(want.data()), std::streamsize(len));
    ASSERT_TRUE((*disk)->read(off / 512, len / 512, got.data()).ok());
    EXPECT_TRUE(got == want);
  }
  // QueryAllocatedBlocks over NFC: the data areas are allocated, the rest is not.
  auto extents = (*disk)->device().allocated(0, (64ull << 30) / 512);
  ASSERT_TRUE(extents.ok()) << extents.error().message;
  uint64_t allocated = 0;
  for (const auto& e : *extents) allocated += e.count * 512;
  EXPECT_GE(allocated, 10u << 20);
  EXPECT_LE(allocated, 64u << 20) << "a 64 GiB disk holding 10 MiB";
  ASSERT_FALSE(extents->empty());
  EXPECT_EQ(extents->front().start, 0u);
}

TEST_F(NfcTransport, CompressionAndFragmentOrderGiveTheSameBytes) {
  const SampleDisk& d = disk_named("DC0_H0_VM0/disk1-000001.vmdk");
  const auto want = vixtest::qemu_raw(d.local);
  for (const std::string compression : {"zlib", "skipz"}) {
    for (const std::string fault : {"order=reverse\nfragment=4096\n", "order=shuffle\n"}) {
      SCOPED_TRACE(compression + " " + fault);
      faults(fault);
      init({{"vixfs.nfc.compression", compression}, {"vixfs.nfc.maxRequestKB", "1024"}});
      auto conn = connect(d, "nbd");
      ASSERT_TRUE(conn.ok()) << conn.error().message;
      auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
      ASSERT_TRUE(disk.ok()) << disk.error().message;
      EXPECT_TRUE(vixtest::read_all(**disk, 4096) == want);
    }
  }
}

TEST_F(NfcTransport, WritesThroughAReadWriteTicketLandInTheDisk) {
  const SampleDisk& d = disk_named("DC0_C0_RP0_VM0/disk1.vmdk");
  std::vector<uint8_t> pattern((3u << 20) + 512);
  for (size_t i = 0; i < pattern.size(); i++) pattern[i] = uint8_t(i * 7 + 3);
  {
    auto conn = connect(d, "nbdssl", false);
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(d.datastore_path, 0);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    ASSERT_FALSE((*disk)->read_only());
    auto w = (*disk)->write(2048, pattern.size() / 512, pattern.data());
    ASSERT_TRUE(w.ok()) << w.error().message;
    ASSERT_TRUE((*disk)->flush().ok());
  }
  EXPECT_TRUE(qemu_range(d.local, 2048 * 512, pattern.size()) == pattern);
  // A snapshot's disk opens read-only whatever is asked.
  const SampleDisk& snap = disk_named("DC0_C0_RP0_VM0/disk1.vmdk", false);
  auto conn = connect(snap, "nbd", false);
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(snap.datastore_path, 0);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_EQ((*disk)->write(0, 1, pattern.data()).error().code, VIX_E_FILE_READ_ONLY);
}

TEST_F(NfcTransport, TicketsAreSingleUseAndBoundToTheirVm) {
  const SampleDisk& d = disk_named("DC0_H0_VM1/disk1.vmdk");
  std::string err;
  auto client = sim_->login("u", "p", &err);
  ASSERT_TRUE(client) << err;
  auto ticket = vix::vsphere::acquire_nfc_ticket(*client, ro_request(d.vm));
  ASSERT_TRUE(ticket.ok()) << ticket.error().message;
  EXPECT_EQ(ticket->port, std::stoi(sim_->get("VCSIM_NFC_PORT")));
  EXPECT_EQ(ticket->ssl_thumbprint, sim_->get("VCSIM_NFC_SHA1"));
  EXPECT_FALSE(ticket->session_id.empty());
  auto writable = vix::vsphere::acquire_nfc_ticket(
      *client, {.vm = d.vm, .disk_key = 99999, .host = "host-21", .writable = true});
  ASSERT_FALSE(writable.ok());
  EXPECT_NE(writable.error().message.find("NfcRandomAccessOpenDisk"), std::string::npos)
      << writable.error().message;
  auto nowhere = vix::vsphere::acquire_nfc_ticket(*client, ro_request("vm-nonexistent"));
  EXPECT_FALSE(nowhere.ok());
}

TEST_F(NfcTransport, ServerErrorsEndTheRequestNamingHostStepAndTheServersWords) {
  const SampleDisk& d = disk_named("DC0_H0_VM1/disk1.vmdk");
  const std::string nfc_host = "127.0.0.1:" + sim_->get("VCSIM_NFC_PORT");
  struct Case {
    std::string faults, expect;
  };
  const Case cases[] = {
      {"fail_io=1\nerror_text=Disk locked by the test\n", "Disk locked by the test"},
      {"bad_magic=1\n", "bad frame magic"},
      {"oversized_fragment=1\n", "passes the request's end"},
      {"overlap_fragment=1\n", "overlaps bytes already received"},
  };
  // One connection: a fault then meets the read, not the handshake of a second connection.
  init({{"vixDiskLib.nfc.RequestTimeoutMs", "3000"}, {"vixfs.nfc.connections", "1"}});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.faults);
    faults("");
    auto conn = connect(d, "nbd");
    ASSERT_TRUE(conn.ok()) << conn.error().message;
    auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
    ASSERT_TRUE(disk.ok()) << disk.error().message;
    faults(c.faults);
    std::vector<uint8_t> buf(1 << 20);
    auto r = (*disk)->read(0, buf.size() / 512, buf.data());
    ASSERT_FALSE(r.ok()) << sim_->nfc_log();
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(nfc_host), std::string::npos) << r.error().message;
    // The next read reconnects and gets the right bytes.
    faults("");
    ASSERT_TRUE((*disk)->read(0, buf.size() / 512, buf.data()).ok());
    EXPECT_TRUE(buf == qemu_range(d.local, 0, buf.size()));
  }
}

TEST_F(NfcTransport, RefusedTicketFailsTheOpenWithAuthdsWordsAndTheChainFallsThrough) {
  const SampleDisk& d = disk_named("DC0_H0_VM1/disk1.vmdk");
  faults("authd_refuse=Access denied by the test\n");
  auto conn = connect(d, "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_NE(disk.error().message.find("530 Access denied by the test"), std::string::npos)
      << disk.error().message;
  EXPECT_NE(disk.error().message.find("BANNER"), std::string::npos) << disk.error().message;

  auto chain = connect(d, "nbdssl:nbd:https");
  ASSERT_TRUE(chain.ok()) << chain.error().message;
  auto fell = (*chain)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(fell.ok()) << fell.error().message;
  EXPECT_EQ((*fell)->transport_name(), "https");
}

TEST_F(NfcTransport, AllocationErrorsBackOffToSmallerRequests) {
  const SampleDisk& d = disk_named("DC0_H0_VM0/disk1.vmdk", false);
  faults("max_io=524288\n");
  auto conn = connect(d, "nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::vector<uint8_t> buf(8 << 20);
  auto r = (*disk)->read(0, buf.size() / 512, buf.data());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(buf == qemu_range(d.local, 0, buf.size()));
  EXPECT_GE((*disk)->transport_stats().link_counter("allocationRetries"), 1u);
}

TEST_F(NfcTransport, DroppedConnectionsReconnectWithAFreshTicket) {
  const SampleDisk& d = disk_named("DC0_H0_VM0/disk1-000001.vmdk");
  faults("drop_after_io=40\n");
  init({{"vixfs.nfc.maxRequestKB", "256"}});
  auto conn = connect(d, "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  EXPECT_TRUE(vixtest::read_all(**disk, 8192) == vixtest::qemu_raw(d.local));
  EXPECT_GE((*disk)->transport_stats().link_counter("reconnects"), 1u);
}

TEST_F(NfcTransport, ServerKilledMidCopyAndRestartedTheCopyCompletes) {
  const SampleDisk& d = disk_named("DC0_H0_VM0/disk1.vmdk", false);
  // 20 ms per request (the server's latency) keeps the 64 MiB copy going past the kill at 300 ms.
  faults("delay_ms=20\n");
  auto conn = connect(d, "nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::thread killer([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::string err;
    EXPECT_TRUE(sim_->kill_nfc(&err)) << err;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_TRUE(sim_->restart_nfc(&err)) << err;
  });
  const auto got = vixtest::read_all(**disk, 2048);
  killer.join();
  EXPECT_TRUE(got == vixtest::qemu_raw(d.local));
  EXPECT_GE((*disk)->transport_stats().link_counter("reconnects"), 1u);
}

TEST_F(NfcTransport, ServerGoneForGoodFailsWithinTheBudget) {
  const SampleDisk& d = disk_named("DC0_H0_VM1/disk1.vmdk");
  init({{"vixDiskLib.nfc.RequestTimeoutMs", "2000"}, {"vixDiskLib.nfc.AcceptTimeoutMs", "2000"}});
  auto conn = connect(d, "nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  std::string err;
  ASSERT_TRUE(sim_->kill_nfc(&err)) << err;
  std::vector<uint8_t> buf(1 << 20);
  const auto started = std::chrono::steady_clock::now();
  auto r = (*disk)->read(0, buf.size() / 512, buf.data());
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(sim_->restart_nfc(&err)) << err;
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("RequestTimeoutMs"), std::string::npos) << r.error().message;
  EXPECT_LT(took, std::chrono::seconds(15));
}

TEST_F(NfcTransport, AHostWithAnotherCertificateIsRefusedShowingWhatItPresented) {
  // A second NFC server with a certificate of its own, reached through nfcHostPort: the ticket's
  // thumbprint (the simulator's host) does not match it.
  TempDir other;
  run_ok("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=impostor -keyout " +
         sh_quote(other.file("key.pem")) + " -out " + sh_quote(other.file("cert.pem")) + " 2>&1");
  const int port = vixtest::free_port();
  vixtest::write_file(other.file("port"), std::to_string(port) + "\n");
  vixtest::write_file(other.file("owner"), std::to_string(::getpid()) + "\n");
  std::filesystem::create_directories(other.file("tickets"));
  vixtest::ChildOptions o;
  o.argv = {sim_->get("VCSIM_BIN"), "nfc-serve", "-dir", other.path()};
  o.log = other.file("serve.log");
  vixtest::Child impostor(o);
  ASSERT_TRUE(impostor.wait_for_port(port))
      << run("cat " + sh_quote(other.file("serve.log"))).output;

  const SampleDisk& d = disk_named("DC0_H0_VM1/disk1.vmdk");
  vix::ConnectSpec spec = sim_->connect_spec(d.vm);
  spec.nfc_host_port = uint32_t(port);
  auto conn = vix::Connection::connect(spec, true, "", "nbdssl");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(disk.ok());
  EXPECT_NE(disk.error().message.find("NFC authd"), std::string::npos) << disk.error().message;
  EXPECT_NE(disk.error().message.find(sim_->get("VCSIM_NFC_SHA1")), std::string::npos)
      << "the expected thumbprint: " << disk.error().message;
  const std::string presented =
      run_ok("openssl x509 -noout -fingerprint -sha1 -in " + sh_quote(other.file("cert.pem")));
  const std::string hex = presented.substr(presented.find('=') + 1, 59);
  EXPECT_NE(disk.error().message.find(hex), std::string::npos)
      << "the presented " << hex << ": " << disk.error().message;
}

TEST_F(NfcTransport, AHostThatDoesNotAnswerIsSkippedForAWhile) {
  const SampleDisk& d = disk_named("DC0_H0_VM1/disk1.vmdk");
  vix::ConnectSpec spec = sim_->connect_spec(d.vm);
  spec.nfc_host_port = uint32_t(vixtest::free_port());  // nothing listens there
  auto conn = vix::Connection::connect(spec, true, "", "nbd:https");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto fell = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(fell.ok()) << fell.error().message;
  EXPECT_EQ((*fell)->transport_name(), "https");
  auto nbd_conn = vix::Connection::connect(spec, true, "", "nbd");
  ASSERT_TRUE(nbd_conn.ok()) << nbd_conn.error().message;
  auto skipped = (*nbd_conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_FALSE(skipped.ok());
  EXPECT_NE(skipped.error().message.find("did not answer in the last minute"), std::string::npos)
      << skipped.error().message;
}

TEST_F(NfcTransport, TheC11ClientReadsOverNfcAsABackupProductWould) {
  // The library as a VDDK program loads it (dlopen of lib64/libvixDiskLib.so.8), through
  // VixDiskLib_ConnectEx with a vmxSpec and the transport list of a backup product.
  const SampleDisk& d = disk_named("DC0_H0_VM0/disk1-000001.vmdk");
  TempDir tmp;
  run_ok("qemu-img convert -U -O raw " + sh_quote(d.local) + " " + sh_quote(tmp.file("raw")));
  for (const std::string modes : {"nbdssl:nbd", "nbd:https"}) {
    SCOPED_TRACE(modes);
    auto r =
        run("C11_PASSWORD=p " + sh_quote(VIXFS_C11_CLIENT) + " " + sh_quote(VIXFS_VDDK_LIBDIR) +
            " --remote " + sim_->get("VCSIM_HOST") + " " + sim_->get("VCSIM_PORT") + " " +
            sim_->get("VCSIM_SHA1") + " u moref=" + d.vm + " " + sh_quote(d.datastore_path) + " " +
            modes + " " + sh_quote(tmp.file("raw")) + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("all checks passed"), std::string::npos) << r.output;
  }
}

TEST_F(NfcTransport, GetInfoAnswersFromTheHostsDiskDatabase) {
  const SampleDisk& d = disk_named("DC0_C0_RP0_VM0/disk1.vmdk");
  // The descriptor as qemu-img wrote it: the oracle for what the host answers.
  const std::string desc = run_ok("grep -a '^ddb\\.' " + sh_quote(d.local));
  auto value = [&](const std::string& key) {
    const size_t at = desc.find(key + " = \"");
    if (at == std::string::npos) return std::string();
    const size_t start = at + key.size() + 4;
    return desc.substr(start, desc.find('"', start) - start);
  };
  ASSERT_FALSE(value("ddb.geometry.cylinders").empty()) << desc;
  auto conn = connect(d, "nbd");
  ASSERT_TRUE(conn.ok()) << conn.error().message;
  auto disk = (*conn)->open(d.datastore_path, VIXDISKLIB_FLAG_OPEN_READ_ONLY);
  ASSERT_TRUE(disk.ok()) << disk.error().message;
  const vix::DiskInfo info = (*disk)->info();
  EXPECT_EQ(std::to_string(info.phys_geometry.cylinders), value("ddb.geometry.cylinders"));
  EXPECT_EQ(std::to_string(info.phys_geometry.heads), value("ddb.geometry.heads"));
  const std::string adapter = value("ddb.adapterType");
  EXPECT_EQ(info.adapter, adapter == "ide"        ? VIXDISKLIB_ADAPTER_IDE
                          : adapter == "lsilogic" ? VIXDISKLIB_ADAPTER_SCSI_LSILOGIC
                          : adapter == "buslogic" ? VIXDISKLIB_ADAPTER_SCSI_BUSLOGIC
                                                  : VIXDISKLIB_ADAPTER_UNKNOWN)
      << adapter;
}
