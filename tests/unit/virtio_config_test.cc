// Config-space reads: one bounds-checked implementation (read_config_bytes) behind every device;
// offset and size come from the guest.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "devices/virtio/block/block_device.h"
#include "devices/virtio/block/virtio_blk_spec.h"
#include "devices/virtio/device.h"
#include "devices/virtio/rng/rng_device.h"
#include "devices/virtio/vsock/vsock_device.h"
#include "tests/support/unix_peer.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

constexpr uint64_t kHuge = std::numeric_limits<uint64_t>::max();

std::vector<uint8_t> read(const VirtioDevice& dev, uint64_t offset, size_t size) {
  std::vector<uint8_t> out(size, 0xee);
  dev.read_config(offset, out);
  return out;
}

TEST(ConfigBytes, CopiesInsideZeroesOutside) {
  const std::vector<uint8_t> config{1, 2, 3, 4, 5, 6};
  std::vector<uint8_t> out(4, 0xee);
  read_config_bytes(config, 1, out);
  EXPECT_EQ(out, (std::vector<uint8_t>{2, 3, 4, 5}));
  read_config_bytes(config, 4, out);  // straddles the end
  EXPECT_EQ(out, (std::vector<uint8_t>{5, 6, 0, 0}));
  out.assign(4, 0xee);
  read_config_bytes(config, 6, out);  // just past the end
  EXPECT_EQ(out, (std::vector<uint8_t>(4, 0)));
  out.assign(4, 0xee);
  read_config_bytes(config, kHuge - 1, out);  // offset + size overflows
  EXPECT_EQ(out, (std::vector<uint8_t>(4, 0)));
  out.assign(4, 0xee);
  read_config_bytes({}, 0, out);  // no config space
  EXPECT_EQ(out, (std::vector<uint8_t>(4, 0)));
}

TEST(ConfigBytes, ViewOfAStruct) {
  struct S {
    uint32_t a;
    uint16_t b;
  } s{0x04030201, 0x0605};
  std::vector<uint8_t> out(2);
  read_config_bytes(config_view(s), 4, out);
  EXPECT_EQ(out, (std::vector<uint8_t>{5, 6}));
}

TEST(ConfigBytes, BlockDeviceCapacityAndHostileOffsets) {
  testsupport::TempFile image(8 << 20, "kiln-blk-config");
  BlockDevice dev(BlockOptions{image.path(), false, ""});
  uint64_t capacity = 0;
  const auto bytes = read(dev, blk::kConfigCapacity, 8);
  std::memcpy(&capacity, bytes.data(), 8);
  EXPECT_EQ(capacity, (8u << 20) / 512);
  EXPECT_EQ(read(dev, blk::kConfigSize, 4), (std::vector<uint8_t>(4, 0)));
  EXPECT_EQ(read(dev, kHuge - 2, 8), (std::vector<uint8_t>(8, 0)));
  const auto tail = read(dev, blk::kConfigSize - 2, 4);
  EXPECT_EQ(tail[2], 0);
  EXPECT_EQ(tail[3], 0);
}

TEST(ConfigBytes, RngHasNoConfigSpace) {
  RngDevice dev(std::nullopt);
  EXPECT_TRUE(dev.config_bytes().empty());
  EXPECT_EQ(read(dev, 0, 8), (std::vector<uint8_t>(8, 0)));
  EXPECT_EQ(read(dev, kHuge, 1), (std::vector<uint8_t>(1, 0)));
}

TEST(ConfigBytes, VsockGuestCid) {
  testsupport::TempDir dir("kiln-vsock-config");
  VsockDevice dev(VsockOptions{0x0102030405060708, dir.path() + "/v.sock"});
  EXPECT_EQ(read(dev, 0, 8), (std::vector<uint8_t>{8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(read(dev, 6, 4), (std::vector<uint8_t>{2, 1, 0, 0}));
  EXPECT_EQ(read(dev, kHuge - 3, 8), (std::vector<uint8_t>(8, 0)));
}

}  // namespace
}  // namespace kiln::virtio
