#include "base/mac_address.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(MacAddress, ParsesAndPrints) {
  auto mac = MacAddress::parse("52:54:00:AB:cd:0f");
  ASSERT_TRUE(mac);
  EXPECT_EQ(mac->bytes, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}));
  EXPECT_EQ(mac->to_string(), "52:54:00:ab:cd:0f");
  EXPECT_FALSE(mac->is_multicast());
  EXPECT_FALSE(mac->is_zero());
  EXPECT_TRUE(MacAddress::parse("01:00:5e:00:00:01")->is_multicast());
  EXPECT_TRUE(MacAddress::parse("00:00:00:00:00:00")->is_zero());
}

TEST(MacAddress, RefusesAnythingElse) {
  for (const char* bad : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:", "52-54-00-ab-cd-0f",
                          "52:54:00:ab:cd:0g", "525:4:00:ab:cd:0f", " 52:54:00:ab:cd:0f"})
    EXPECT_FALSE(MacAddress::parse(bad)) << bad;
}

}  // namespace
}  // namespace kiln
