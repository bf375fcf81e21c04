// virtio-console through the mmio transport and the host-side virtqueue driver: transmit to the
// console output, host input into receive buffers (held while there are none), backpressure,
// the terminal size in config space, and chains that break only themselves.
#include "devices/virtio/console/console_device.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "devices/virtio/mmio_transport.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::MmioDriver;
using testsupport::VirtqueueDriver;

constexpr uint64_t kMiB = 1 << 20;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class ConsoleTest : public ::testing::Test {
 protected:
  ConsoleTest() {
    console = std::make_shared<ConsoleDevice>(
        [this](std::span<const uint8_t> b) {
          const size_t n = std::min(b.size(), sink_room);
          output.append(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
          sink_room -= n;
          return n;
        },
        [this] { ++rx_space; }, 80, 24);
    transport = std::make_unique<MmioTransport>(console, mem, [this] { ++irqs; });
    drv = std::make_unique<MmioDriver>(*transport);
    const VirtqueueDriver* queues[] = {&rxq, &txq};
    features = drv->init(~uint64_t{0}, queues);
  }
  Gpa offer_rx(uint32_t len) {
    const Gpa buf = rxq.alloc(len);
    rxq.submit({{buf, len, true}});
    return buf;
  }
  std::string read_guest(Gpa addr, size_t len) {
    std::string s(len, '\0');
    mem.read(addr, std::span(reinterpret_cast<uint8_t*>(s.data()), len));
    return s;
  }
  // The event loop's part: the device's host fd fired.
  void host_event() { transport->process_host_events(); }

  GuestMemory mem{{{0, 4 * kMiB}}};
  std::string output;
  size_t sink_room = SIZE_MAX;  // what the console output still takes (0: stalled)
  int rx_space = 0;
  int irqs = 0;
  std::shared_ptr<ConsoleDevice> console;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<MmioDriver> drv;
  VirtqueueDriver rxq{mem, 0x1000, 16, 0x10000, kMiB};
  VirtqueueDriver txq{mem, 0x4000, 16, 0x110000, kMiB};
  uint64_t features = 0;
};

TEST_F(ConsoleTest, TerminalSizeInConfigSpace) {
  ASSERT_NE(features & feature(0), 0u);  // VIRTIO_CONSOLE_F_SIZE
  EXPECT_EQ(drv->read32(0x100), 80u | (24u << 16));
  console->set_size(132, 50);
  EXPECT_EQ(drv->read32(0x100), 132u | (50u << 16));
  EXPECT_EQ(drv->read32(0x104), 1u);  // max_nr_ports
}

TEST_F(ConsoleTest, TransmitReachesTheConsoleOutput) {
  txq.submit({{txq.alloc_bytes(bytes_of("hello ")), 6, false},
              {txq.alloc_bytes(bytes_of("hvc0\n")), 5, false}});
  drv->kick(1);
  EXPECT_EQ(output, "hello hvc0\n");
  auto e = txq.pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->len, 0u);
  EXPECT_EQ(irqs, 1);
}

TEST_F(ConsoleTest, InputFillsReceiveBuffersAndWaitsWhenThereAreNone) {
  EXPECT_EQ(console->enqueue_input(bytes_of("abc")), 3u);
  host_event();  // no receive buffers yet: the input stays buffered
  EXPECT_FALSE(rxq.pop_used());
  const Gpa a = offer_rx(2);
  const Gpa b = offer_rx(8);
  drv->kick(0);  // the driver adds buffers: the device delivers at once
  auto e1 = rxq.pop_used();
  auto e2 = rxq.pop_used();
  ASSERT_TRUE(e1 && e2);
  EXPECT_EQ(read_guest(a, e1->len), "ab");
  EXPECT_EQ(read_guest(b, e2->len), "c");
  EXPECT_EQ(console->rx_room(), ConsoleDevice::kRxCapacity);
}

TEST_F(ConsoleTest, FullBufferRefusesInputThenSignalsRoom) {
  std::string big(ConsoleDevice::kRxCapacity + 10, 'x');
  EXPECT_EQ(console->enqueue_input(bytes_of(big)), ConsoleDevice::kRxCapacity);
  EXPECT_EQ(console->rx_room(), 0u);
  EXPECT_EQ(rx_space, 0);
  offer_rx(4096);
  drv->kick(0);
  EXPECT_EQ(console->rx_room(), 4096u);
  EXPECT_EQ(rx_space, 1);  // the console reader may resume
}

TEST_F(ConsoleTest, ExactFillStillSignalsRoom) {
  // The console reader offers at most rx_room(): filling the buffer exactly must arm rx_space.
  std::string fill(console->rx_room(), 'y');
  EXPECT_EQ(console->enqueue_input(bytes_of(fill)), fill.size());
  EXPECT_EQ(console->rx_room(), 0u);
  offer_rx(16);
  drv->kick(0);
  EXPECT_EQ(rx_space, 1);
}

TEST_F(ConsoleTest, PausedDeviceDeliversNothingUntilResume) {
  transport->pause();
  console->enqueue_input(bytes_of("typed while paused"));
  const Gpa buf = offer_rx(64);
  drv->kick(0);  // a receive-queue kick while paused
  host_event();  // and a host wake-up that raced with pause()
  EXPECT_FALSE(rxq.pop_used());
  EXPECT_EQ(read_guest(buf, 5), std::string(5, '\0'));  // guest memory untouched
  EXPECT_EQ(irqs, 0);
  transport->resume();
  ASSERT_EQ(transport->queue_events()[0].consume(), 1u);  // the kick comes back
  drv->kick(0);
  auto e = rxq.pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(read_guest(buf, e->len), "typed while paused");
}

TEST_F(ConsoleTest, StalledOutputHoldsTransmitChainsUntilOutputSpace) {
  sink_room = 4;
  txq.submit({{txq.alloc_bytes(bytes_of("first chain\n")), 12, false}});
  txq.submit({{txq.alloc_bytes(bytes_of("second\n")), 7, false}});
  drv->kick(1);  // returns at once: nothing blocks
  EXPECT_EQ(output, "firs");
  EXPECT_FALSE(txq.pop_used());  // the chain in progress is not completed
  drv->kick(1);                  // more kicks take no further chain
  EXPECT_EQ(output, "firs");
  sink_room = SIZE_MAX;
  console->output_space();  // the sink drained
  host_event();
  EXPECT_EQ(output, "first chain\nsecond\n");
  EXPECT_TRUE(txq.pop_used());
  EXPECT_TRUE(txq.pop_used());
}

TEST(ConsoleQueues, HostEventsLeaveAQueueThatIsNotReadyAlone) {
  // The driver set up only the transmit queue: the receive queue's rings are at GPA 0.
  GuestMemory mem({{0, 4 * kMiB}});
  mem.fill(0, 0x01, 0x4000);  // whatever the guest keeps at 0
  auto console =
      std::make_shared<ConsoleDevice>([](std::span<const uint8_t> b) { return b.size(); }, [] {});
  MmioTransport transport(console, mem, [] {});
  MmioDriver drv(transport);
  VirtqueueDriver txq(mem, 0x10000, 16, 0x20000, kMiB);
  using testsupport::mmio::kStatus;
  drv.set_status(0);
  drv.set_status(kStatusAcknowledge);
  drv.set_status(kStatusAcknowledge | kStatusDriver);
  drv.write_driver_features(feature(kFVersion1));
  drv.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  drv.setup_queue(ConsoleDevice::kTransmitQueue, txq);
  drv.set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  console->enqueue_input(bytes_of("input"));
  transport.process_host_events();
  EXPECT_EQ(drv.status() & kStatusDeviceNeedsReset, 0u);
  std::vector<uint8_t> low(0x4000);
  mem.read(0, low);
  EXPECT_EQ(std::count(low.begin(), low.end(), 0x01), 0x4000);  // nothing written at GPA 0
}

TEST_F(ConsoleTest, BadChainsBreakOnlyThemselves) {
  rxq.submit({{rxq.alloc(16), 16, false}});  // receive buffer the device may not write
  console->enqueue_input(bytes_of("ok"));
  const Gpa good = offer_rx(16);
  drv->kick(0);
  auto bad = rxq.pop_used();
  auto fine = rxq.pop_used();
  ASSERT_TRUE(bad && fine);
  EXPECT_EQ(bad->len, 0u);
  EXPECT_EQ(read_guest(good, fine->len), "ok");

  txq.submit({{4 * kMiB - 8, 64, false}});  // transmit buffer past the end of guest memory
  txq.submit({{txq.alloc_bytes(bytes_of("after")), 5, false}});
  drv->kick(1);
  EXPECT_EQ(output, "after");
  EXPECT_EQ(drv->status() & kStatusDeviceNeedsReset, 0u);
}

TEST_F(ConsoleTest, ResetLeavesNothingReadyAndActivationDeliversTypedInput) {
  drv->write32(testsupport::mmio::kStatus, 0);
  console->enqueue_input(bytes_of("early"));
  const VirtqueueDriver* queues[] = {&rxq, &txq};
  rxq.reset_allocator();
  drv->init(~uint64_t{0}, queues);
  const Gpa buf = offer_rx(16);
  host_event();  // activation signalled the pending input
  auto e = rxq.pop_used();
  ASSERT_TRUE(e);
  EXPECT_EQ(read_guest(buf, e->len), "early");
}

}  // namespace
}  // namespace kiln::virtio
