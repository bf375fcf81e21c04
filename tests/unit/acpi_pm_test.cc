#include <gtest/gtest.h>

#include "devices/legacy/acpi_pm.h"

namespace kiln {
namespace {

struct Counts {
  int power_off = 0;
  int reset = 0;
};

void put(AcpiPm& pm, uint16_t port, uint8_t value) {
  pm.write(port - AcpiPm::kBasePort, std::span(&value, 1));
}

TEST(AcpiPm, SleepEnableWithS5PowersOff) {
  Counts c;
  AcpiPm pm([&] { ++c.power_off; }, [&] { ++c.reset; });
  constexpr uint8_t s5 = AcpiPm::kS5SleepType << AcpiPm::kSleepTypeShift;
  put(pm, AcpiPm::kSleepControlPort, s5);  // SLP_TYP without SLP_EN: nothing yet
  put(pm, AcpiPm::kSleepControlPort, AcpiPm::kSleepEnable | (3 << AcpiPm::kSleepTypeShift));  // S3
  put(pm, AcpiPm::kSleepStatusPort, s5 | AcpiPm::kSleepEnable);  // the wrong register
  EXPECT_EQ(c.power_off, 0);
  put(pm, AcpiPm::kSleepControlPort, s5 | AcpiPm::kSleepEnable);
  EXPECT_EQ(c.power_off, 1);
  EXPECT_EQ(c.reset, 0);
  EXPECT_EQ(s5 | AcpiPm::kSleepEnable, 0x34);  // what Linux writes: SLP_TYP 5 << 2 | SLP_EN
}

TEST(AcpiPm, ResetValueOnResetRegisterResets) {
  Counts c;
  AcpiPm pm([&] { ++c.power_off; }, [&] { ++c.reset; });
  put(pm, AcpiPm::kResetPort, 0x06);
  put(pm, AcpiPm::kSleepControlPort, AcpiPm::kResetValue);
  EXPECT_EQ(c.reset, 0);
  put(pm, AcpiPm::kResetPort, AcpiPm::kResetValue);
  EXPECT_EQ(c.reset, 1);
  EXPECT_EQ(c.power_off, 0);
}

TEST(AcpiPm, ReadsAreZero) {
  AcpiPm pm([] {}, [] {});
  for (uint16_t port : {AcpiPm::kSleepControlPort, AcpiPm::kSleepStatusPort, AcpiPm::kResetPort}) {
    uint8_t v[2] = {0xff, 0xff};
    pm.read(port - AcpiPm::kBasePort, v);
    EXPECT_EQ(v[0], 0);
    EXPECT_EQ(v[1], 0);
  }
}

}  // namespace
}  // namespace kiln
