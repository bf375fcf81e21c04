#include "devices/virtio/queue_drain.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::DriverBuffer;
using testsupport::VirtqueueDriver;

constexpr uint64_t kMemSize = 1 << 20;

class QueueDrainTest : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr uint16_t kSize = 8;

  QueueDrainTest() {
    q.size = kSize;
    q.desc_table = drv.desc_table();
    q.avail_ring = drv.avail_ring();
    q.used_ring = drv.used_ring();
    q.ready = true;
    q.set_features(/*event_idx=*/GetParam(), /*indirect=*/false);
  }

  // A chain of one 8-byte device-writable buffer.
  uint16_t submit() { return drv.submit({{drv.alloc(8), 8, true}}); }

  // Drains with a handler that completes every chain with `written` = 8 + its head.
  DrainResult drain_all(std::vector<uint16_t>& seen, std::vector<std::string>& bad) {
    return d.drain(
        q, mem, [&](const std::string& e) { bad.push_back(e); },
        [&](const DescriptorChain& c) {
          seen.push_back(c.head);
          return DrainStep::used(8u + c.head);
        });
  }

  GuestMemory mem{{{0, kMemSize}}};
  VirtqueueDriver drv{mem, 0x1000, kSize, 0x10000, 0x80000};
  Queue q;
  QueueDrain d;
};

TEST_P(QueueDrainTest, CompletesEveryChainInOrderThenIsIdle) {
  const uint16_t a = submit(), b = submit(), c = submit();
  std::vector<uint16_t> seen;
  std::vector<std::string> bad;
  const DrainResult r = drain_all(seen, bad);
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(r.idle);
  EXPECT_EQ(seen, (std::vector<uint16_t>{a, b, c}));
  EXPECT_TRUE(bad.empty());
  for (uint16_t h : {a, b, c}) {
    const auto e = drv.pop_used();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->id, h);
    EXPECT_EQ(e->len, 8u + h);
  }
  EXPECT_FALSE(drv.pop_used());
  if (GetParam()) {
    EXPECT_EQ(drv.avail_event(), 3);  // the driver kicks for the next buffer
  }
}

TEST_P(QueueDrainTest, MalformedChainIsReturnedEmptyAndTheDrainGoesOn) {
  const uint16_t a = submit();
  // A chain whose only descriptor points outside guest memory.
  const uint16_t broken = drv.submit({{kMemSize - 4, 8, true}});
  const uint16_t c = submit();
  std::vector<uint16_t> seen;
  std::vector<std::string> bad;
  const DrainResult r = drain_all(seen, bad);
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(r.idle);
  EXPECT_EQ(seen, (std::vector<uint16_t>{a, c}));
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].find("outside guest memory"), std::string::npos) << bad[0];
  const auto ea = drv.pop_used(), eb = drv.pop_used(), ec = drv.pop_used();
  ASSERT_TRUE(ea && eb && ec);
  EXPECT_EQ(eb->id, broken);
  EXPECT_EQ(eb->len, 0u);
  EXPECT_EQ(ec->id, c);
}

TEST_P(QueueDrainTest, BrokenRingEndsTheDrainWithTheReason) {
  submit();
  drv.set_avail_idx(static_cast<uint16_t>(drv.avail_idx() + kSize));  // moved by more than size
  std::vector<uint16_t> seen;
  std::vector<std::string> bad;
  const DrainResult r = drain_all(seen, bad);
  EXPECT_NE(r.error.find("more than the queue size"), std::string::npos) << r.error;
  EXPECT_FALSE(r.idle);
  EXPECT_TRUE(seen.empty());
}

// The race notification re-enabling exists for: the driver makes a buffer available after the
// device saw the ring empty but before the device re-enabled notifications. The driver saw
// notifications off and does not kick, so the drain itself must find and serve that buffer.
TEST_P(QueueDrainTest, BufferAddedBetweenEmptyAndReenableIsProcessed) {
  const uint16_t a = submit();
  std::vector<uint16_t> seen;
  int empties = 0;
  uint16_t late = 0;
  const DrainResult r = d.drain(
      q, mem, [](const std::string&) { FAIL(); },
      [&](const DescriptorChain& c) {
        seen.push_back(c.head);
        return DrainStep::used(1);
      },
      QueueDrain::Always{},
      [&] {
        if (++empties == 1) late = submit();  // no kick: the device is not listening yet
      });
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(r.idle);
  EXPECT_EQ(empties, 2);
  EXPECT_EQ(seen, (std::vector<uint16_t>{a, late}));
  EXPECT_EQ(drv.used_idx(), 2);
  if (GetParam()) {
    EXPECT_EQ(drv.avail_event(), 2);
  }
}

TEST_P(QueueDrainTest, RequeueLeavesTheChainWithTheDriver) {
  const uint16_t a = submit();
  submit();
  int calls = 0;
  DrainResult r = d.drain(
      q, mem, [](const std::string&) {},
      [&](const DescriptorChain& c) {
        EXPECT_EQ(c.head, a);  // requeue() hands the same chain again
        return ++calls < 3 ? DrainStep::requeue() : DrainStep::requeue_and_stop();
      });
  EXPECT_FALSE(r.idle);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(q.next_avail(), 0);
  EXPECT_EQ(drv.used_idx(), 0);
  std::vector<uint16_t> seen;
  std::vector<std::string> bad;
  r = drain_all(seen, bad);
  EXPECT_TRUE(r.idle);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], a);
}

TEST_P(QueueDrainTest, HeldChainIsResumedBeforeANewPopAndDroppedByReset) {
  const uint16_t a = submit();
  const uint16_t b = submit();
  std::vector<uint16_t> seen;
  bool full = true;
  auto handle = [&](const DescriptorChain& c) {
    seen.push_back(c.head);
    return full ? DrainStep::hold() : DrainStep::used(0);
  };
  auto ignore = [](const std::string&) {};
  EXPECT_FALSE(d.drain(q, mem, ignore, handle).idle);
  EXPECT_TRUE(d.held());
  EXPECT_EQ(q.next_avail(), 1);
  EXPECT_FALSE(d.drain(q, mem, ignore, handle).idle);  // same chain again, nothing popped
  EXPECT_EQ(q.next_avail(), 1);
  full = false;
  EXPECT_TRUE(d.drain(q, mem, ignore, handle).idle);
  EXPECT_EQ(seen, (std::vector<uint16_t>{a, a, a, b}));
  EXPECT_EQ(drv.used_idx(), 2);

  full = true;
  const uint16_t c = submit();
  d.drain(q, mem, ignore, handle);
  ASSERT_TRUE(d.held());
  d.reset();
  EXPECT_FALSE(d.held());
  EXPECT_EQ(seen.back(), c);
}

TEST_P(QueueDrainTest, WantIsAskedBeforeEveryPop) {
  submit();
  submit();
  submit();
  int budget = 2;
  std::vector<uint16_t> seen;
  const DrainResult r = d.drain(
      q, mem, [](const std::string&) {},
      [&](const DescriptorChain& c) {
        seen.push_back(c.head);
        --budget;
        return DrainStep::used(0);
      },
      [&] { return budget > 0; });
  EXPECT_FALSE(r.idle);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(q.next_avail(), 2);  // the third stays available
}

TEST_P(QueueDrainTest, UsedRingOutsideMemoryIsAnError) {
  submit();
  q.used_ring = kMemSize;  // as if the ring were unmapped
  std::vector<uint16_t> seen;
  std::vector<std::string> bad;
  EXPECT_EQ(drain_all(seen, bad).error, "used ring is outside guest memory");
}

INSTANTIATE_TEST_SUITE_P(EventIdx, QueueDrainTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "EventIdx" : "NoEventIdx"; });

}  // namespace
}  // namespace kiln::virtio
