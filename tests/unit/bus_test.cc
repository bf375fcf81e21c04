#include "base/bus.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"

namespace kiln {
namespace {

struct Recorder : BusDevice {
  std::vector<std::pair<uint64_t, uint8_t>> writes;
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(offset + i);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.emplace_back(offset, data[0]);
  }
};

TEST(Bus, DispatchesWithOffsetRelativeToBase) {
  Bus bus("test");
  auto dev = std::make_shared<Recorder>();
  bus.insert(0x3f8, 8, dev);
  uint8_t b = 0;
  ASSERT_TRUE(bus.read(0x3fd, std::span(&b, 1)));
  EXPECT_EQ(b, 5);
  const uint8_t v = 0x41;
  ASSERT_TRUE(bus.write(0x3f8, std::span(&v, 1)));
  ASSERT_EQ(dev->writes.size(), 1u);
  EXPECT_EQ(dev->writes[0], (std::pair<uint64_t, uint8_t>{0, 0x41}));
}

TEST(Bus, MissesOutsideAndAcrossRangeEnd) {
  Bus bus("test");
  bus.insert(0x1000, 0x10, std::make_shared<Recorder>());
  uint8_t buf[4];
  EXPECT_FALSE(bus.read(0xfff, std::span(buf, 1)));
  EXPECT_FALSE(bus.read(0x1010, std::span(buf, 1)));
  EXPECT_FALSE(bus.read(0x100e, std::span(buf, 4)));  // straddles the end
  EXPECT_TRUE(bus.read(0x100c, std::span(buf, 4)));
}

TEST(Bus, RefusesOverlaps) {
  Bus bus("test");
  bus.insert(0x100, 0x10, std::make_shared<Recorder>());
  EXPECT_THROW(bus.insert(0x108, 0x10, std::make_shared<Recorder>()), Error);
  EXPECT_THROW(bus.insert(0xf8, 0x10, std::make_shared<Recorder>()), Error);
  EXPECT_THROW(bus.insert(0x0, 0, std::make_shared<Recorder>()), Error);
  EXPECT_NO_THROW(bus.insert(0x110, 0x10, std::make_shared<Recorder>()));
  EXPECT_NO_THROW(bus.insert(0xf0, 0x10, std::make_shared<Recorder>()));
}

}  // namespace
}  // namespace kiln
