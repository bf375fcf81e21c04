#include "devices/virtio/mmio_transport.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "base/event_loop.h"
#include "devices/virtio/block/block_device.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::MmioDriver;
using testsupport::TempFile;
using testsupport::VirtqueueDriver;
namespace reg = testsupport::mmio;

constexpr uint64_t kMemSize = 1 << 20;
constexpr uint32_t kFakeId = 42;
constexpr uint32_t kFakeBit = 3;  // a device-specific feature bit
constexpr uint16_t kFakeMaxQueue = 16;

// Completes every chain with its readable length; reports a broken ring.
class FakeDevice : public VirtioDevice {
 public:
  uint32_t device_id() const override { return kFakeId; }
  uint64_t device_features() const override {
    return feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc) |
           feature(kFakeBit);
  }
  size_t num_queues() const override { return 2; }
  uint16_t max_queue_size() const override { return kFakeMaxQueue; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i)
      if (offset + i < config.size()) data[i] = config[offset + i];
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i)
      if (offset + i < config.size()) config[offset + i] = data[i];
  }
  void activate(uint64_t features) override {
    ++activations;
    activated_features = features;
  }
  void reset() override { ++resets; }
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override {
    ++processed;
    last_index = index;
    do {
      for (;;) {
        Queue::Pop pop = queue.pop(mem);
        if (pop.kind == Queue::Pop::Kind::kEmpty) break;
        if (pop.kind == Queue::Pop::Kind::kBrokenRing) return pop.error;
        if (pop.kind == Queue::Pop::Kind::kBadChain) continue;
        if (!queue.add_used(mem, pop.chain.head, static_cast<uint32_t>(pop.chain.readable_bytes)))
          return "used ring outside memory";
      }
    } while (queue.enable_notification(mem));
    return "";
  }

  // Host-driven work (as a TAP or a socket would): consumes host_fd, fills one buffer of queue 1.
  int host_event_fd() const override { return host_fd.fd(); }
  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override {
    ++host_events;
    host_fd.consume();
    Queue::Pop pop = queues[1].pop(mem);
    if (pop.kind == Queue::Pop::Kind::kBrokenRing) return pop.error;
    if (pop.kind == Queue::Pop::Kind::kChain) queues[1].add_used(mem, pop.chain.head, 7);
    return "";
  }

  EventFd host_fd;  // "host input is waiting"
  std::vector<uint8_t> config = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
  int activations = 0;
  uint64_t activated_features = 0;
  int resets = 0;
  int processed = 0;
  int host_events = 0;
  size_t last_index = 99;
};

class MmioTest : public ::testing::Test {
 protected:
  uint32_t rd(uint64_t offset) { return drv.read32(offset); }
  void wr(uint64_t offset, uint32_t v) { drv.write32(offset, v); }
  // ACKNOWLEDGE | DRIVER, features, FEATURES_OK.
  void negotiate(uint64_t features) {
    wr(reg::kStatus, 0);
    wr(reg::kStatus, kStatusAcknowledge);
    wr(reg::kStatus, kStatusAcknowledge | kStatusDriver);
    drv.write_driver_features(features);
    wr(reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  }
  static constexpr uint32_t kAll =
      kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk;

  GuestMemory mem{{{0, kMemSize}}};
  std::shared_ptr<FakeDevice> dev = std::make_shared<FakeDevice>();
  int irqs = 0;
  MmioTransport transport{dev, mem, [this] { ++irqs; }};
  MmioDriver drv{transport};
  VirtqueueDriver q0{mem, 0x1000, 8, 0x10000, 0x10000};
  VirtqueueDriver q1{mem, 0x4000, 16, 0x20000, 0x10000};
};

TEST_F(MmioTest, IdentificationRegisters) {
  EXPECT_EQ(rd(reg::kMagic), 0x74726976u);
  EXPECT_EQ(rd(reg::kVersion), 2u);
  EXPECT_EQ(rd(reg::kDeviceId), kFakeId);
  EXPECT_EQ(rd(reg::kVendorId), MmioTransport::kVendorId);
}

TEST_F(MmioTest, RegistersNeedAligned32BitAccess) {
  uint8_t b[2] = {0xff, 0xff};
  transport.read(reg::kMagic, std::span(b, 2));
  EXPECT_EQ(b[0], 0);
  EXPECT_EQ(b[1], 0);
  uint32_t v = 0xffffffff;
  transport.read(reg::kMagic + 2, std::span(reinterpret_cast<uint8_t*>(&v), 4));
  EXPECT_EQ(v, 0u);
}

TEST_F(MmioTest, DeviceFeaturesBySelector) {
  EXPECT_EQ(drv.device_features(), dev->device_features());
  wr(reg::kDeviceFeaturesSel, 2);
  EXPECT_EQ(rd(reg::kDeviceFeatures), 0u);
}

TEST_F(MmioTest, FeaturesAcceptedAndPassedToActivate) {
  const uint64_t f = feature(kFVersion1) | feature(kFakeBit);
  negotiate(f);
  EXPECT_EQ(drv.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  // Features cannot change after FEATURES_OK.
  drv.write_driver_features(f | feature(kFRingEventIdx));
  drv.setup_queue(0, q0);
  wr(reg::kStatus, kAll);
  EXPECT_EQ(drv.status(), kAll);
  EXPECT_EQ(dev->activations, 1);
  EXPECT_EQ(dev->activated_features, f);
}

TEST_F(MmioTest, FeaturesOkRefusedWithoutVersion1) {
  negotiate(feature(kFakeBit));
  EXPECT_EQ(drv.status() & kStatusFeaturesOk, 0u);
  wr(reg::kStatus, kAll);  // the driver carries on regardless: still refused
  EXPECT_EQ(drv.status() & (kStatusFeaturesOk | kStatusDriverOk), 0u);
  EXPECT_EQ(dev->activations, 0);
}

TEST_F(MmioTest, FeaturesOkRefusedForUnofferedBit) {
  negotiate(feature(kFVersion1) | feature(7));
  EXPECT_EQ(drv.status() & kStatusFeaturesOk, 0u);
  // Retrying with a proper set works.
  drv.write_driver_features(feature(kFVersion1));
  wr(reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_NE(drv.status() & kStatusFeaturesOk, 0u);
}

TEST_F(MmioTest, StatusMustBeSetInOrder) {
  wr(reg::kStatus, kStatusDriver);  // DRIVER without ACKNOWLEDGE
  EXPECT_EQ(drv.status(), 0u);
  wr(reg::kStatus, kStatusAcknowledge);
  wr(reg::kStatus, kStatusAcknowledge | kStatusFeaturesOk);  // FEATURES_OK without DRIVER
  EXPECT_EQ(drv.status(), kStatusAcknowledge);
  wr(reg::kStatus, kStatusAcknowledge | kStatusDriver);
  drv.write_driver_features(feature(kFVersion1));
  wr(reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);  // no FEATURES_OK
  EXPECT_EQ(drv.status(), kStatusAcknowledge | kStatusDriver);
  EXPECT_EQ(dev->activations, 0);
  wr(reg::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  wr(reg::kStatus, kStatusDriver | kStatusFeaturesOk);  // clearing a bit is not allowed
  EXPECT_EQ(drv.status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  wr(reg::kStatus, kAll);
  EXPECT_EQ(drv.status(), kAll);
  EXPECT_EQ(dev->activations, 1);
}

TEST_F(MmioTest, FailedBitIsKept) {
  wr(reg::kStatus, kStatusAcknowledge);
  wr(reg::kStatus, kStatusFailed);
  EXPECT_NE(drv.status() & kStatusFailed, 0u);
}

TEST_F(MmioTest, QueueNumMaxAndInvalidQueueNum) {
  negotiate(feature(kFVersion1));
  wr(reg::kQueueSel, 0);
  EXPECT_EQ(rd(reg::kQueueNumMax), kFakeMaxQueue);
  EXPECT_EQ(rd(reg::kQueueNum), kFakeMaxQueue);
  wr(reg::kQueueNum, 8);
  EXPECT_EQ(rd(reg::kQueueNum), 8u);
  wr(reg::kQueueNum, 0);
  EXPECT_EQ(rd(reg::kQueueNum), 8u);
  wr(reg::kQueueNum, 6);  // not a power of two
  EXPECT_EQ(rd(reg::kQueueNum), 8u);
  wr(reg::kQueueNum, 2 * kFakeMaxQueue);  // over the maximum
  EXPECT_EQ(rd(reg::kQueueNum), 8u);
  wr(reg::kQueueSel, 2);  // no such queue
  EXPECT_EQ(rd(reg::kQueueNumMax), 0u);
  wr(reg::kQueueNum, 4);
  EXPECT_EQ(rd(reg::kQueueNum), 0u);
  wr(reg::kQueueReady, 1);
  EXPECT_EQ(rd(reg::kQueueReady), 0u);
}

TEST_F(MmioTest, QueueSetupOnlyAfterFeaturesOk) {
  wr(reg::kStatus, kStatusAcknowledge);
  wr(reg::kStatus, kStatusAcknowledge | kStatusDriver);
  wr(reg::kQueueSel, 0);
  wr(reg::kQueueNum, 4);
  EXPECT_EQ(rd(reg::kQueueNum), kFakeMaxQueue);
}

TEST_F(MmioTest, QueueAddressesReadBack) {
  negotiate(feature(kFVersion1));
  wr(reg::kQueueSel, 1);
  drv.write_addr(reg::kQueueDescLow, 0x123456789000);
  drv.write_addr(reg::kQueueDriverLow, 0xabcdef000);
  drv.write_addr(reg::kQueueDeviceLow, 0x42000);
  EXPECT_EQ(rd(reg::kQueueDescLow), 0x56789000u);
  EXPECT_EQ(rd(reg::kQueueDescHigh), 0x1234u);
  EXPECT_EQ(rd(reg::kQueueDriverLow), 0xbcdef000u);
  EXPECT_EQ(rd(reg::kQueueDriverHigh), 0xau);
  EXPECT_EQ(rd(reg::kQueueDeviceLow), 0x42000u);
  EXPECT_EQ(rd(reg::kQueueDeviceHigh), 0u);
}

TEST_F(MmioTest, FullInitAndOneRequestRaisesUsedInterrupt) {
  const VirtqueueDriver* queues[] = {&q0, &q1};
  drv.init(~uint64_t{0}, queues);
  EXPECT_EQ(dev->activated_features, dev->device_features());
  wr(reg::kQueueSel, 1);
  EXPECT_EQ(rd(reg::kQueueReady), 1u);
  EXPECT_EQ(rd(reg::kQueueNum), 16u);

  q1.submit({{q1.alloc(24), 24, false}});
  drv.kick(1);
  EXPECT_EQ(dev->last_index, 1u);
  auto e = q1.pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->len, 24u);
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(rd(reg::kInterruptStatus), kInterruptUsedRing);
  wr(reg::kInterruptAck, kInterruptUsedRing);
  EXPECT_EQ(rd(reg::kInterruptStatus), 0u);
}

TEST_F(MmioTest, HostEventsRunOnlyWhenLiveAndInterruptWhenAQueueMoved) {
  transport.process_host_events();
  EXPECT_EQ(dev->host_events, 0);  // not activated yet
  const VirtqueueDriver* queues[] = {&q0, &q1};
  drv.init(~uint64_t{0}, queues);
  q1.set_used_event(0);
  q1.submit({{q1.alloc(16), 16, true}});  // a buffer for the device, not kicked
  transport.process_host_events();
  EXPECT_EQ(dev->host_events, 1);
  auto e = q1.pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->len, 7u);
  EXPECT_EQ(irqs, 1);
  transport.process_host_events();  // nothing moved: no interrupt
  EXPECT_EQ(irqs, 1);
}

TEST_F(MmioTest, InterruptAckClearsOnlyAckedBits) {
  drv.init(~uint64_t{0}, q0);
  q0.submit({{q0.alloc(4), 4, false}});
  drv.kick(0);
  transport.config_changed();
  EXPECT_EQ(rd(reg::kInterruptStatus), kInterruptUsedRing | kInterruptConfigChange);
  wr(reg::kInterruptAck, kInterruptConfigChange);
  EXPECT_EQ(rd(reg::kInterruptStatus), kInterruptUsedRing);
  wr(reg::kInterruptAck, kInterruptUsedRing);
  EXPECT_EQ(rd(reg::kInterruptStatus), 0u);
}

TEST_F(MmioTest, EventIdxSuppressesInterruptThroughTransport) {
  const uint64_t f = drv.init(~uint64_t{0}, q0);
  ASSERT_NE(f & feature(kFRingEventIdx), 0u);
  q0.set_used_event(5);
  q0.submit({{q0.alloc(4), 4, false}});
  drv.kick(0);
  EXPECT_EQ(q0.used_idx(), 1);
  EXPECT_EQ(irqs, 0);
  EXPECT_EQ(q0.avail_event(), 1);  // the device asks for a kick at the next buffer
}

TEST_F(MmioTest, KickBeforeDriverOkDoesNothing) {
  negotiate(feature(kFVersion1));
  drv.setup_queue(0, q0);
  q0.submit({{q0.alloc(4), 4, false}});
  drv.kick(0);
  EXPECT_EQ(dev->processed, 0);
  drv.kick(7);  // no such queue
  EXPECT_EQ(dev->processed, 0);
}

TEST_F(MmioTest, QueueReadyWithRingsOutsideMemoryNeedsReset) {
  negotiate(feature(kFVersion1));
  wr(reg::kQueueSel, 0);
  wr(reg::kQueueNum, 8);
  drv.write_addr(reg::kQueueDescLow, kMemSize - 0x40);  // 8 * 16 bytes do not fit
  drv.write_addr(reg::kQueueDriverLow, q0.avail_ring());
  drv.write_addr(reg::kQueueDeviceLow, q0.used_ring());
  wr(reg::kQueueReady, 1);
  EXPECT_EQ(rd(reg::kQueueReady), 0u);
  EXPECT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
  EXPECT_EQ(rd(reg::kInterruptStatus) & kInterruptConfigChange, kInterruptConfigChange);
  EXPECT_EQ(irqs, 1);

  // Reset recovers.
  wr(reg::kStatus, 0);
  EXPECT_EQ(drv.status(), 0u);
  EXPECT_NO_THROW(drv.init(~uint64_t{0}, q0));
}

TEST_F(MmioTest, DeviceNeedingResetDoesNotGoLiveOnReadModifyWriteStatus) {
  // Linux's virtio_add_status() writes get_status() | bit, so after a failed QueueReady it
  // echoes DEVICE_NEEDS_RESET back together with DRIVER_OK.
  negotiate(feature(kFVersion1));
  wr(reg::kQueueSel, 0);
  drv.write_addr(reg::kQueueDescLow, kMemSize);  // outside memory
  wr(reg::kQueueReady, 1);
  ASSERT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
  wr(reg::kStatus, drv.status() | kStatusDriverOk);
  EXPECT_EQ(drv.status() & kStatusDriverOk, 0u);
  EXPECT_EQ(dev->activations, 0);
  // Only a reset leaves the state.
  wr(reg::kStatus, 0);
  EXPECT_NO_THROW(drv.init(~uint64_t{0}, q0));
  EXPECT_EQ(dev->activations, 1);
}

TEST_F(MmioTest, DriverCannotSetDeviceNeedsReset) {
  wr(reg::kStatus, kStatusAcknowledge | kStatusDeviceNeedsReset);
  EXPECT_EQ(drv.status() & kStatusDeviceNeedsReset, 0u);
}

TEST_F(MmioTest, MisalignedRingNeedsReset) {
  negotiate(feature(kFVersion1));
  wr(reg::kQueueSel, 0);
  wr(reg::kQueueNum, 8);
  drv.write_addr(reg::kQueueDescLow, q0.desc_table() + 8);
  drv.write_addr(reg::kQueueDriverLow, q0.avail_ring());
  drv.write_addr(reg::kQueueDeviceLow, q0.used_ring());
  wr(reg::kQueueReady, 1);
  EXPECT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
}

TEST_F(MmioTest, ResetClearsEverything) {
  const VirtqueueDriver* queues[] = {&q0, &q1};
  drv.init(~uint64_t{0}, queues);
  q0.submit({{q0.alloc(4), 4, false}});
  drv.kick(0);
  ASSERT_NE(rd(reg::kInterruptStatus), 0u);
  wr(reg::kQueueSel, 1);

  const int resets = dev->resets;  // init() itself starts with a reset
  wr(reg::kStatus, 0);
  EXPECT_EQ(dev->resets, resets + 1);
  EXPECT_EQ(drv.status(), 0u);
  EXPECT_EQ(rd(reg::kInterruptStatus), 0u);
  EXPECT_EQ(rd(reg::kQueueSel), 0u);  // write-only register, reads 0
  for (uint32_t i = 0; i < 2; ++i) {
    wr(reg::kQueueSel, i);
    EXPECT_EQ(rd(reg::kQueueReady), 0u);
    EXPECT_EQ(rd(reg::kQueueNum), kFakeMaxQueue);
    EXPECT_EQ(rd(reg::kQueueDescLow), 0u);
    EXPECT_EQ(rd(reg::kQueueDriverLow), 0u);
    EXPECT_EQ(rd(reg::kQueueDeviceLow), 0u);
  }
  const int processed = dev->processed;
  q0.submit({{q0.alloc(4), 4, false}});
  drv.kick(0);
  EXPECT_EQ(dev->processed, processed);  // not live any more

  // A fresh driver instance (rings zeroed again) can start over; the used index restarts at 0.
  VirtqueueDriver fresh(mem, 0x8000, 8, 0x30000, 0x1000);
  drv.init(~uint64_t{0}, fresh);
  fresh.submit({{fresh.alloc(4), 4, false}});
  drv.kick(0);
  EXPECT_EQ(fresh.used_idx(), 1);
}

TEST_F(MmioTest, QueueNotifySignalsEventFd) {
  ASSERT_EQ(transport.queue_events().size(), 2u);
  EXPECT_EQ(transport.queue_events()[1].consume(), 0u);
  wr(reg::kQueueNotify, 1);
  EXPECT_EQ(transport.queue_events()[1].consume(), 1u);
  EXPECT_EQ(transport.queue_events()[0].consume(), 0u);
  wr(reg::kQueueNotify, 0);
  wr(reg::kQueueNotify, 0);
  EXPECT_EQ(transport.queue_events()[0].consume(), 2u);
  wr(reg::kQueueNotify, 5);  // no such queue: ignored
  EXPECT_EQ(transport.queue_events()[0].consume(), 0u);
  EXPECT_EQ(transport.queue_events()[1].consume(), 0u);
  EXPECT_EQ(MmioTransport::kQueueNotifyOffset, reg::kQueueNotify);
}

TEST_F(MmioTest, BrokenRingDuringProcessingNeedsReset) {
  drv.init(~uint64_t{0}, q0);
  q0.set_avail_idx(100);  // jumps by more than the queue size
  drv.kick(0);
  EXPECT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
  EXPECT_EQ(rd(reg::kInterruptStatus), kInterruptConfigChange);
  EXPECT_EQ(irqs, 1);
  const int processed = dev->processed;
  drv.kick(0);  // the device stays stopped
  EXPECT_EQ(dev->processed, processed);
  EXPECT_EQ(irqs, 1);
  // DRIVER_OK etc. remain visible alongside DEVICE_NEEDS_RESET.
  EXPECT_EQ(drv.status() & kAll, kAll);
}

TEST_F(MmioTest, BadHeadDuringProcessingNeedsReset) {
  drv.init(~uint64_t{0}, q0);
  q0.set_avail_entry(0, 200);
  q0.set_avail_idx(1);
  drv.kick(0);
  EXPECT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
}

TEST_F(MmioTest, ConfigChangedBumpsGenerationAndInterruptsOnlyWhenLive) {
  const uint32_t gen0 = rd(reg::kConfigGeneration);
  transport.config_changed();
  EXPECT_EQ(rd(reg::kConfigGeneration), gen0 + 1);
  EXPECT_EQ(irqs, 0);
  EXPECT_EQ(rd(reg::kInterruptStatus), 0u);
  drv.init(~uint64_t{0}, q0);
  transport.config_changed();
  EXPECT_EQ(rd(reg::kConfigGeneration), gen0 + 2);
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(rd(reg::kInterruptStatus), kInterruptConfigChange);
}

TEST_F(MmioTest, ConfigSpaceReadWrite) {
  EXPECT_EQ(rd(reg::kConfig), 0x44332211u);
  EXPECT_EQ(rd(reg::kConfig + 4), 0x88776655u);
  uint8_t b = 0;
  transport.read(reg::kConfig + 5, std::span(&b, 1));
  EXPECT_EQ(b, 0x66);
  uint16_t h = 0;
  transport.read(reg::kConfig + 2, std::span(reinterpret_cast<uint8_t*>(&h), 2));
  EXPECT_EQ(h, 0x4433);
  EXPECT_EQ(rd(reg::kConfig + 8), 0u);  // past the device's config
  wr(reg::kConfig, 0xdeadbeef);
  EXPECT_EQ(dev->config[0], 0xef);
  EXPECT_EQ(rd(reg::kConfig), 0xdeadbeefu);
}

// Runs `loop` on its own thread for `d`, as kiln-events would.
void run_loop_for(EventLoop& loop, std::chrono::milliseconds d) {
  std::thread t([&] { loop.run(); });
  std::this_thread::sleep_for(d);
  loop.stop();
  t.join();
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

// Watches the transport's host fd the way VirtioDevices::attach does, counting handler runs.
class MmioLoopTest : public MmioTest {
 protected:
  MmioLoopTest() {
    loop.add(transport.host_event_fd(), EPOLLIN, [this](uint32_t) {
      ++handler_runs;
      transport.process_host_events();
    });
  }
  EventLoop loop;
  int handler_runs = 0;
};

TEST_F(MmioLoopTest, FailedDeviceWithReadyHostFdDoesNotSpinTheEventLoop) {
  const VirtqueueDriver* queues[] = {&q0, &q1};
  drv.init(~uint64_t{0}, queues);
  q0.set_avail_idx(100);  // jumps by more than the queue size
  drv.kick(0);
  ASSERT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
  dev->host_fd.signal();  // host input arrives for a device that may not act on it
  run_loop_for(loop, std::chrono::milliseconds(100));
  EXPECT_EQ(handler_runs, 0);  // before the gate: the handler ran non-stop
  EXPECT_EQ(dev->host_events, 0);
  EXPECT_FALSE(readable(transport.host_event_fd()));

  // Reset and re-initialization bring the host work back; the waiting input is handled once.
  VirtqueueDriver fresh0(mem, 0x8000, 8, 0x30000, 0x1000);
  const VirtqueueDriver* again[] = {&fresh0, &q1};
  drv.init(~uint64_t{0}, again);
  q1.submit({{q1.alloc(16), 16, true}});
  run_loop_for(loop, std::chrono::milliseconds(50));
  EXPECT_EQ(dev->host_events, 1);
  EXPECT_EQ(handler_runs, 1);
  ASSERT_TRUE(q1.pop_used());
}

TEST_F(MmioLoopTest, HostFdIsWatchedOnlyWhileLive) {
  dev->host_fd.signal();
  EXPECT_FALSE(readable(transport.host_event_fd()));  // not activated yet
  const VirtqueueDriver* queues[] = {&q0, &q1};
  drv.init(~uint64_t{0}, queues);
  EXPECT_TRUE(readable(transport.host_event_fd()));
  wr(reg::kStatus, 0);
  EXPECT_FALSE(readable(transport.host_event_fd()));
  EXPECT_EQ(handler_runs, 0);
}

TEST_F(MmioLoopTest, PauseDefersKicksAndHostEventsUntilResume) {
  const VirtqueueDriver* queues[] = {&q0, &q1};
  drv.init(~uint64_t{0}, queues);
  transport.pause();
  q1.submit({{q1.alloc(24), 24, false}});
  drv.kick(1);  // the loop consumed the ioeventfd and handed the kick over
  EXPECT_EQ(dev->processed, 0);
  EXPECT_EQ(q1.used_idx(), 0);
  dev->host_fd.signal();
  run_loop_for(loop, std::chrono::milliseconds(50));
  EXPECT_EQ(handler_runs, 0);       // no busy loop while paused
  transport.process_host_events();  // a wake-up that raced with pause() does nothing
  EXPECT_EQ(dev->host_events, 0);
  EXPECT_EQ(irqs, 0);

  transport.resume();
  EXPECT_EQ(transport.queue_events()[1].consume(), 1u);  // the kick is signalled again
  EXPECT_EQ(transport.queue_events()[0].consume(), 0u);
  drv.kick(1);
  EXPECT_EQ(dev->processed, 1);
  EXPECT_EQ(q1.used_idx(), 1);
  // The host event that waited is handled once the loop runs (a loaded machine, as under ASan
  // beside the nested VMs, may take longer than one short run: up to 5 s).
  for (int i = 0; i < 100 && dev->host_events == 0; ++i)
    run_loop_for(loop, std::chrono::milliseconds(50));
  EXPECT_EQ(dev->host_events, 1);
  transport.resume();  // idempotent
  EXPECT_EQ(transport.queue_events()[1].consume(), 0u);
}

// Captures spdlog's output in memory for the test's lifetime.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  size_t lines() const {
    const std::string s = out_.str();
    return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

TEST_F(MmioTest, GuestLoopsCannotFloodTheLog) {
  CapturedLog log;
  constexpr int kCycles = 10000;
  for (int i = 0; i < kCycles; ++i) negotiate(feature(7));  // no VERSION_1: refused
  const size_t refused = log.lines();
  EXPECT_GE(refused, 1u);
  EXPECT_LE(refused, LogLimiter::kBurst + kCycles / LogLimiter::kEvery);
  for (int i = 0; i < kCycles; ++i) {
    negotiate(feature(kFVersion1));
    wr(reg::kQueueSel, 0);
    drv.write_addr(reg::kQueueDescLow, kMemSize);  // outside memory: needs reset
    wr(reg::kQueueReady, 1);
  }
  EXPECT_NE(drv.status() & kStatusDeviceNeedsReset, 0u);
  const size_t failed = log.lines() - refused;
  EXPECT_GE(failed, 1u);
  EXPECT_LE(failed, LogLimiter::kBurst + kCycles / LogLimiter::kEvery);
}

TEST(MmioBlock, ConfigSpaceHoldsCapacity) {
  TempFile image(3 << 20);  // 6144 sectors
  GuestMemory mem({{0, kMemSize}});
  auto blk = std::make_shared<BlockDevice>(BlockOptions{image.path(), false, ""});
  MmioTransport transport(blk, mem, [] {});
  MmioDriver drv(transport);
  EXPECT_EQ(drv.read32(reg::kDeviceId), kDeviceIdBlock);
  EXPECT_EQ(drv.read32(reg::kConfig), 6144u);
  EXPECT_EQ(drv.read32(reg::kConfig + 4), 0u);
  uint64_t capacity = 0;
  transport.read(reg::kConfig, std::span(reinterpret_cast<uint8_t*>(&capacity), 8));
  EXPECT_EQ(capacity, 6144u);
  EXPECT_EQ(drv.read32(reg::kConfig + 20), 512u);   // blk_size
  EXPECT_EQ(drv.read32(reg::kConfig + 0x200), 0u);  // far past the config
}

}  // namespace
}  // namespace kiln::virtio
