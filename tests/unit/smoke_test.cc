#include <gtest/gtest.h>

#include "common/result.h"

TEST(ResultTest, CarriesValueOrError) {
  vix::Result<int> good = 3;
  vix::Result<int> bad = vix::fail(VIX_E_DISK_INVAL, "x.vmdk: bad magic");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, static_cast<VixError>(VIX_E_DISK_INVAL));
}
