// virtio-rng through the mmio transport and the host-side virtqueue driver: random bytes,
// partial fills, bad chains, and the rate limiter holding requests back until its timer fires.
#include "devices/virtio/rng/rng_device.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <memory>
#include <set>
#include <vector>

#include "devices/virtio/mmio_transport.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::MmioDriver;
using testsupport::VirtqueueDriver;

constexpr uint64_t kMiB = 1 << 20;

class RngTest : public ::testing::Test {
 protected:
  void make(std::optional<TokenBucket> limit) {
    rng = std::make_shared<RngDevice>(std::move(limit), &metrics);
    transport = std::make_unique<MmioTransport>(rng, mem, [this] { ++irqs; });
    drv = std::make_unique<MmioDriver>(*transport);
    q = std::make_unique<VirtqueueDriver>(mem, 0x1000, 16, 0x10000, kMiB);
    drv->init(~uint64_t{0}, *q);
  }
  // Offers a writable buffer of `len` bytes (filled with 0xcc); returns its address.
  Gpa offer(uint32_t len) {
    const Gpa buf = q->alloc(len);
    mem.fill(buf, 0xcc, len);
    q->submit({{buf, len, true}});
    return buf;
  }
  bool timer_fired(int timeout_ms) {
    pollfd p{rng->host_event_fd(), POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1;
  }

  GuestMemory mem{{{0, 4 * kMiB}}};
  Metrics metrics;
  std::shared_ptr<RngDevice> rng;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<MmioDriver> drv;
  std::unique_ptr<VirtqueueDriver> q;
  int irqs = 0;
};

TEST_F(RngTest, IdentifiesAsEntropyDeviceWithoutConfigSpace) {
  make(std::nullopt);
  EXPECT_EQ(drv->read32(testsupport::mmio::kDeviceId), kDeviceIdRng);
  EXPECT_EQ(drv->read32(0x100), 0u);
}

TEST_F(RngTest, FillsEveryBufferWithFreshRandomBytes) {
  make(std::nullopt);
  const Gpa a = offer(256), b = offer(256);
  drv->kick();
  for (int i = 0; i < 2; ++i) {
    auto e = q->pop_used();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->len, 256u);
  }
  std::vector<uint8_t> x(256), y(256);
  mem.read(a, x);
  mem.read(b, y);
  EXPECT_NE(x, y);
  EXPECT_GT(std::set<uint8_t>(x.begin(), x.end()).size(), 100u);  // not a constant fill
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(metrics.entropy_bytes.load(), 512u);
}

TEST_F(RngTest, HugeBufferGetsAPartialFill) {
  make(std::nullopt);
  offer(RngDevice::kMaxBytesPerRequest + 4096);
  drv->kick();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->len, RngDevice::kMaxBytesPerRequest);
}

TEST_F(RngTest, ReadOnlyOrOutOfMemoryBufferFailsThatRequestOnly) {
  make(std::nullopt);
  q->submit({{q->alloc(64), 64, false}});  // device-readable only: nothing to fill
  q->submit({{4 * kMiB - 16, 64, true}});  // runs past the end of guest memory
  const Gpa good = offer(32);
  drv->kick();
  std::vector<uint32_t> lens;
  while (auto e = q->pop_used()) lens.push_back(e->len);
  ASSERT_EQ(lens.size(), 3u);
  EXPECT_EQ(lens[0], 0u);
  EXPECT_EQ(lens[1], 0u);
  EXPECT_EQ(lens[2], 32u);
  EXPECT_NE(*mem.read_obj<uint64_t>(good), 0xccccccccccccccccull);
  EXPECT_EQ(metrics.entropy_errors.load(), 2u);
}

TEST_F(RngTest, RateLimitHoldsRequestsUntilTheTimerFires) {
  make(TokenBucket(100, std::chrono::milliseconds(100)));  // 100 bytes per 100 ms
  offer(64);
  offer(64);  // only 36 bytes left for this one
  offer(64);  // bucket empty: waits
  drv->kick();
  std::vector<uint32_t> lens;
  while (auto e = q->pop_used()) lens.push_back(e->len);
  EXPECT_EQ(lens, (std::vector<uint32_t>{64, 36}));
  EXPECT_TRUE(rng->throttled());
  EXPECT_EQ(metrics.entropy_throttled.load(), 1u);
  drv->kick();  // a kick while throttled does not bypass the limit
  EXPECT_FALSE(q->pop_used());

  ASSERT_TRUE(timer_fired(2000));
  transport->process_host_events();
  auto e = q->pop_used();
  ASSERT_TRUE(e);
  EXPECT_GT(e->len, 0u);
  EXPECT_LE(e->len, 64u);
  EXPECT_FALSE(rng->throttled());
}

TEST_F(RngTest, ResetDisarmsTheTimer) {
  make(TokenBucket(10, std::chrono::milliseconds(50)));
  offer(10);
  offer(10);
  drv->kick();
  ASSERT_TRUE(rng->throttled());
  drv->write32(testsupport::mmio::kStatus, 0);  // driver resets the device
  EXPECT_FALSE(rng->throttled());
  EXPECT_FALSE(timer_fired(200));  // nothing left to wake an inactive device
}

}  // namespace
}  // namespace kiln::virtio
