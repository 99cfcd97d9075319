// vmdk::disk_files: which files make up a disk, for every layout qemu-img writes, and what is
// not the first file of a disk.
#include "vmdk/disk_files.h"

#include <gtest/gtest.h>

#include "support/fixtures.h"

namespace {

using vix::vmdk::DiskFiles;
using vixtest::run_ok;
using vixtest::sh_quote;

class VmdkDiskFiles : public ::testing::Test {
 protected:
  std::string create(const std::string& name, const std::string& subformat,
                     const std::string& extra = "") {
    const std::string path = dir_.file(name);
    run_ok("qemu-img create -q -f vmdk -o subformat=" + subformat + extra + " " + sh_quote(path) +
           " 8M");
    return path;
  }
  vix::Result<DiskFiles> files(const std::string& path) {
    return vix::vmdk::disk_files(*opener_, path);
  }
  vixtest::TempDir dir_;
  std::unique_ptr<vix::SourceOpener> opener_ = vix::make_local_opener();
};

TEST_F(VmdkDiskFiles, MonolithicSparseIsOneFile) {
  const std::string path = create("mono.vmdk", "monolithicSparse");
  auto f = files(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->kind, DiskFiles::Kind::kHostedSparse);
  EXPECT_EQ(f->files, std::vector<std::string>{path});
  EXPECT_TRUE(f->parent.empty());
  EXPECT_FALSE(f->descriptor_error.has_value());
}

TEST_F(VmdkDiskFiles, DescriptorNamesItsExtentsAndParent) {
  const std::string flat = create("flat.vmdk", "monolithicFlat");
  auto f = files(flat);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->kind, DiskFiles::Kind::kDescriptor);
  EXPECT_EQ(f->files, (std::vector<std::string>{flat, dir_.file("flat-flat.vmdk")}));

  const std::string split = create("split.vmdk", "twoGbMaxExtentSparse");
  f = files(split);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->files, (std::vector<std::string>{split, dir_.file("split-s001.vmdk")}));

  const std::string child = dir_.file("child.vmdk");
  run_ok("qemu-img create -q -f vmdk -b " + sh_quote(flat) + " -F vmdk " + sh_quote(child));
  f = files(child);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->files, std::vector<std::string>{child});
  EXPECT_EQ(f->parent, flat);  // qemu writes the parent's absolute path
}

TEST_F(VmdkDiskFiles, ExtentsAreNotDisks) {
  create("flat.vmdk", "monolithicFlat");
  auto f = files(dir_.file("flat-flat.vmdk"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, VIX_E_DISK_INVALIDDISK);
  EXPECT_NE(f.error().message.find("flat-flat.vmdk: not the first file of a disk"),
            std::string::npos)
      << f.error().message;

  create("split.vmdk", "twoGbMaxExtentSparse");
  f = files(dir_.file("split-s001.vmdk"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("a sparse extent without a descriptor"), std::string::npos)
      << f.error().message;

  vixtest::write_file(dir_.file("junk.vmdk"), std::string("not a disk"));
  f = files(dir_.file("junk.vmdk"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("no createType"), std::string::npos) << f.error().message;
}

TEST_F(VmdkDiskFiles, CorruptDescriptorIsStillADiskThatSaysWhy) {
  vixtest::write_file(dir_.file("bad.vmdk"),
                      std::string("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n"
                                  "RW lots FLAT \"x.vmdk\" 0\n"));
  auto f = files(dir_.file("bad.vmdk"));
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_TRUE(f->descriptor_error.has_value());
  EXPECT_NE(f->descriptor_error->message.find("bad.vmdk"), std::string::npos);
  EXPECT_EQ(f->files, std::vector<std::string>{dir_.file("bad.vmdk")});
}

}  // namespace
