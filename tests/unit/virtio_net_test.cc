// virtio-net against a real TAP in a private network namespace: the host-side virtqueue driver
// plays the guest, an AF_PACKET socket on the TAP plays the host's network.
#include "devices/virtio/net/net_device.h"

#include <gtest/gtest.h>

#include <linux/if_tun.h>
#include <poll.h>
#include <chrono>

#include <memory>

#include "base/error.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net/virtio_net_spec.h"
#include "tests/support/net_namespace.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using namespace net;
using testsupport::DriverBuffer;
using testsupport::MmioDriver;
using testsupport::PacketSocket;
using testsupport::VirtqueueDriver;
namespace reg = testsupport::mmio;

constexpr uint64_t kMiB = 1 << 20;
constexpr const char* kTap = "kilntap0";
constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr uint8_t kHostMac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
constexpr uint64_t kAll = ~uint64_t{0};

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = testsupport::in_new_netns([&] {
      net_ = std::make_shared<NetDevice>(
          NetOptions{kTap, MacAddress{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}, uint16_t{1500}});
      testsupport::bring_up_quiet(kTap);
      host_ = std::make_unique<PacketSocket>(kTap);
    });
    if (!why.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << why;
    net_->set_metrics(&metrics_);
    transport_ = std::make_unique<MmioTransport>(net_, mem_, [this] { ++irqs_; });
    drv_ = std::make_unique<MmioDriver>(*transport_);
    rx_ = std::make_unique<VirtqueueDriver>(mem_, 0x1000, 64, 0x100000, 2 * kMiB);
    tx_ = std::make_unique<VirtqueueDriver>(mem_, 0x4000, 64, 0x300000, 2 * kMiB);
  }
  uint64_t init(uint64_t wanted = kAll) {
    const VirtqueueDriver* queues[] = {rx_.get(), tx_.get()};
    return drv_->init(wanted, queues);
  }
  // Sends header + frame as one TX chain (split in two descriptors) and kicks.
  uint16_t send(const std::vector<uint8_t>& frame, NetHeader hdr = {}) {
    const Gpa h = tx_->alloc_obj(hdr);
    const Gpa f = tx_->alloc_bytes(frame);
    const uint16_t head =
        tx_->submit({{h, sizeof(hdr), false}, {f, static_cast<uint32_t>(frame.size()), false}});
    drv_->kick(NetDevice::kTxQueue);
    return head;
  }
  // Offers one RX buffer of `len` bytes (header included).
  Gpa offer_rx(uint32_t len, bool kick = true) {
    const Gpa b = rx_->alloc(len);
    mem_.fill(b, 0xee, len);
    rx_->submit({{b, len, true}});
    if (kick) drv_->kick(NetDevice::kRxQueue);
    return b;
  }
  // What the event loop does when the device's host fd is ready; false if it was not.
  bool host_event() {
    pollfd p{net_->host_event_fd(), POLLIN, 0};
    if (::poll(&p, 1, 1000) != 1) return false;
    transport_->process_host_events();
    return true;
  }
  std::vector<uint8_t> guest_bytes(Gpa at, size_t len) {
    std::vector<uint8_t> out(len);
    mem_.read(at, out);
    return out;
  }
  std::vector<uint8_t> frame(size_t payload, uint8_t seed = 1) {
    return testsupport::test_frame(kHostMac, kGuestMac, payload, seed);
  }

  GuestMemory mem_{{{0, 8 * kMiB}}};
  Metrics metrics_;
  int irqs_ = 0;
  std::shared_ptr<NetDevice> net_;
  std::unique_ptr<PacketSocket> host_;
  std::unique_ptr<MmioTransport> transport_;
  std::unique_ptr<MmioDriver> drv_;
  std::unique_ptr<VirtqueueDriver> rx_, tx_;
};

TEST_F(NetTest, FeaturesAndConfigSpace) {
  const uint64_t offered = drv_->device_features();
  for (uint32_t bit : {kFVersion1, kFRingEventIdx, kFMac, kFStatus, kFMtu, kFCsum, kFHostTso4,
                       kFHostTso6, kFGuestCsum, kFGuestTso4, kFGuestTso6})
    EXPECT_NE(offered & feature(bit), 0u) << "bit " << bit;
  EXPECT_EQ(offered & feature(kFMrgRxbuf), 0u);
  EXPECT_EQ(drv_->read32(reg::kDeviceId), kDeviceIdNet);
  init();
  uint8_t mac[6];
  for (int i = 0; i < 6; ++i) {
    uint8_t b = 0;
    transport_->read(reg::kConfig + i, std::span(&b, 1));
    mac[i] = b;
  }
  EXPECT_EQ(0, std::memcmp(mac, kGuestMac, 6));
  EXPECT_EQ(drv_->read32(reg::kConfig + kConfigStatus) & 0xffff, kStatusLinkUp);
  EXPECT_EQ(drv_->read32(reg::kConfig + kConfigMtu) & 0xffff, 1500u);
}

TEST_F(NetTest, WithoutMacTheFeatureIsNotOffered) {
  std::shared_ptr<NetDevice> other;
  ASSERT_EQ("", testsupport::in_new_netns([&] {
              other = std::make_shared<NetDevice>(NetOptions{"kilntap1", {}, {}});
            }));
  EXPECT_EQ(other->device_features() & feature(kFMac), 0u);
  EXPECT_EQ(other->device_features() & feature(kFMtu), 0u);
}

TEST_F(NetTest, OffloadsFollowNegotiation) {
  init(kAll);
  EXPECT_EQ(net_->tap_offloads() & (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6),
            unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6});
  init(feature(kFVersion1) | feature(kFGuestCsum));
  EXPECT_EQ(net_->tap_offloads(), unsigned{TUN_F_CSUM});
  // TSO without checksum offload is not a valid combination: the TAP gets neither.
  init(feature(kFVersion1) | feature(kFGuestTso4));
  EXPECT_EQ(net_->tap_offloads(), 0u);
  drv_->set_status(0);
  EXPECT_EQ(net_->tap_offloads(), 0u);
  EXPECT_FALSE(net_->rx_polling());
}

TEST_F(NetTest, TxFrameReachesTheTap) {
  init();
  const auto f = frame(200);
  const uint16_t head = send(f);
  auto got = host_->receive();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, f);
  auto used = tx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(irqs_, 1);
  EXPECT_EQ(metrics_.net_tx_frames.load(), 1u);
  EXPECT_EQ(metrics_.net_tx_bytes.load(), f.size());
}

TEST_F(NetTest, TxWithChecksumOffloadIsCompletedByTheHost) {
  init();
  // UDP/IPv4 with a partial checksum (the pseudo-header sum) and NEEDS_CSUM: the TAP takes it.
  std::vector<uint8_t> f = frame(0);
  f[12] = 0x08, f[13] = 0x00;
  const uint8_t ip[20] = {0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1};
  const uint8_t udp[8] = {0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0};
  f.insert(f.end(), ip, ip + 20);
  f.insert(f.end(), udp, udp + 8);
  NetHeader hdr{};
  hdr.flags = kHdrFNeedsCsum;
  hdr.csum_start = 34;
  hdr.csum_offset = 6;
  send(f, hdr);
  auto got = host_->receive();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), f.size());
  EXPECT_EQ(metrics_.net_tx_errors.load(), 0u);
}

TEST_F(NetTest, RxFrameReachesTheGuest) {
  init();
  const Gpa buf = offer_rx(2048);
  EXPECT_TRUE(net_->rx_polling());
  const auto f = frame(300, 7);
  host_->send(f);
  ASSERT_TRUE(host_event());
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, sizeof(NetHeader) + f.size());
  NetHeader hdr = *mem_.read_obj<NetHeader>(buf);
  EXPECT_EQ(hdr.num_buffers, 1);
  EXPECT_EQ(hdr.gso_type, kGsoNone);
  EXPECT_EQ(guest_bytes(buf + sizeof(NetHeader), f.size()), f);
  EXPECT_GE(irqs_, 1);
  EXPECT_EQ(metrics_.net_rx_frames.load(), 1u);
  EXPECT_EQ(metrics_.net_rx_bytes.load(), f.size());
}

TEST_F(NetTest, RxAcrossSeveralDescriptors) {
  init();
  const Gpa a = rx_->alloc(12), b = rx_->alloc(50), c = rx_->alloc(1600);
  rx_->submit({{a, 12, true}, {b, 50, true}, {c, 1600, true}});
  drv_->kick(NetDevice::kRxQueue);
  const auto f = frame(500, 3);
  host_->send(f);
  ASSERT_TRUE(host_event());
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 12 + f.size());
  std::vector<uint8_t> got = guest_bytes(b, 50);
  auto rest = guest_bytes(c, f.size() - 50);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, f);
}

TEST_F(NetTest, NoBuffersDropsTapInterestAndTheRxKickRearmsIt) {
  init();
  EXPECT_TRUE(net_->rx_polling());  // armed at DRIVER_OK
  const auto f1 = frame(100, 1), f2 = frame(120, 2);
  host_->send(f1);
  host_->send(f2);
  ASSERT_TRUE(host_event());  // TAP readable, but the guest has no buffers
  EXPECT_FALSE(net_->rx_polling());
  EXPECT_FALSE(readable(net_->host_event_fd())) << "would busy-loop";
  EXPECT_EQ(metrics_.net_rx_no_buffers.load(), 1u);
  EXPECT_FALSE(rx_->pop_used());

  // One buffer: the kick delivers the first waiting frame, then stops polling again.
  const Gpa b1 = offer_rx(2048);
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(guest_bytes(b1 + 12, f1.size()), f1);
  EXPECT_FALSE(net_->rx_polling());
  // The next: the second frame, then the TAP is empty and polled again.
  const Gpa b2 = offer_rx(2048);
  used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(guest_bytes(b2 + 12, f2.size()), f2);
  offer_rx(2048);
  EXPECT_TRUE(net_->rx_polling());
  EXPECT_FALSE(readable(net_->host_event_fd()));
  EXPECT_EQ(metrics_.net_rx_frames.load(), 2u);
  EXPECT_EQ(metrics_.net_rx_dropped.load(), 0u);  // nothing lost
}

TEST_F(NetTest, TxChainShorterThanTheHeaderFailsOnlyThatFrame) {
  init();
  const Gpa h = tx_->alloc(8);
  tx_->submit({{h, 8, false}});
  drv_->kick(NetDevice::kTxQueue);
  auto used = tx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(metrics_.net_tx_errors.load(), 1u);
  EXPECT_FALSE(host_->receive(100));
  // A header with no frame is refused too; the device goes on.
  const Gpa h2 = tx_->alloc_obj(NetHeader{});
  tx_->submit({{h2, 12, false}});
  drv_->kick(NetDevice::kTxQueue);
  ASSERT_TRUE(tx_->pop_used());
  EXPECT_EQ(metrics_.net_tx_errors.load(), 2u);
  const auto f = frame(64);
  send(f);
  auto got = host_->receive();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, f);
  EXPECT_EQ(transport_->status() & kStatusDeviceNeedsReset, 0u);
}

TEST_F(NetTest, TxChainOutsideGuestMemoryIsABadChain) {
  init();
  const Gpa h = tx_->alloc_obj(NetHeader{});
  tx_->submit({{h, 12, false}, {7 * kMiB, 2 * kMiB, false}});
  drv_->kick(NetDevice::kTxQueue);
  auto used = tx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(metrics_.net_tx_errors.load(), 1u);
  EXPECT_FALSE(host_->receive(100));
}

TEST_F(NetTest, ReadOnlyRxBufferIsReturnedUnusedAndTheFrameWaits) {
  init();
  const Gpa ro = rx_->alloc(2048);
  rx_->submit({{ro, 2048, false}});
  const Gpa good = rx_->alloc(2048);
  rx_->submit({{good, 2048, true}});
  const auto f = frame(90, 5);
  host_->send(f);
  drv_->kick(NetDevice::kRxQueue);
  auto first = rx_->pop_used();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->len, 0u);
  auto second = rx_->pop_used();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->len, 12 + f.size());
  EXPECT_EQ(guest_bytes(good + 12, f.size()), f);
  EXPECT_EQ(metrics_.net_rx_errors.load(), 1u);
}

TEST_F(NetTest, RxBufferSmallerThanTheHeaderIsReturnedUnused) {
  init();
  const Gpa tiny = rx_->alloc(8);
  rx_->submit({{tiny, 8, true}});
  drv_->kick(NetDevice::kRxQueue);
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(metrics_.net_rx_errors.load(), 1u);
}

TEST_F(NetTest, TooLongFrameIsDroppedAndCountedAndTheBufferReused) {
  init();
  const Gpa small = offer_rx(12 + 200);
  host_->send(frame(1000, 9));  // does not fit
  const auto fits = frame(150, 4);
  host_->send(fits);
  ASSERT_TRUE(host_event());
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 12 + fits.size());
  EXPECT_EQ(guest_bytes(small + 12, fits.size()), fits);
  EXPECT_EQ(metrics_.net_rx_dropped.load(), 1u);
  EXPECT_EQ(metrics_.net_rx_frames.load(), 1u);
}

TEST_F(NetTest, AFloodOfTooLongFramesDoesNotHoldTheEventLoop) {
  init();
  const Gpa small = offer_rx(12 + 100);
  for (int i = 0; i < 300; ++i) host_->send(frame(500, static_cast<uint8_t>(i)));
  const auto fits = frame(80, 3);
  host_->send(fits);
  ASSERT_TRUE(host_event());
  EXPECT_EQ(metrics_.net_rx_dropped.load(), 256u);  // one wake-up's budget
  EXPECT_TRUE(net_->rx_polling());
  EXPECT_TRUE(readable(net_->host_event_fd()));  // the rest waits for the next wake-up
  EXPECT_FALSE(rx_->pop_used());
  ASSERT_TRUE(host_event());
  EXPECT_EQ(metrics_.net_rx_dropped.load(), 300u);
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(guest_bytes(small + 12, fits.size()), fits);
}

TEST_F(NetTest, BrokenRxRingNeedsResetAndStopsPolling) {
  init();
  // An available index far ahead of the ring: the queue cannot be trusted.
  rx_->set_avail_idx(1000);
  drv_->kick(NetDevice::kRxQueue);
  EXPECT_NE(transport_->status() & kStatusDeviceNeedsReset, 0u);
  EXPECT_FALSE(net_->rx_polling());
  host_->send(frame(60));
  EXPECT_FALSE(readable(net_->host_event_fd()));
  // A reset and a new initialization bring it back.
  rx_ = std::make_unique<VirtqueueDriver>(mem_, 0x1000, 64, 0x100000, 2 * kMiB);
  init();
  const Gpa b = offer_rx(2048);
  auto used = rx_->pop_used();
  ASSERT_TRUE(used);  // the frame sent while broken waited in the TAP
  EXPECT_EQ(guest_bytes(b + 12, 74), frame(60));
}

TEST_F(NetTest, TxLimitKeepsTheFrameOnTheRingUntilTheTimer) {
  init();
  net_->update_rate_limiters(BucketUpdate::keep(), BucketUpdate::keep(),
                             BucketUpdate::set({1000, std::chrono::milliseconds(100), 0}),
                             BucketUpdate::keep());
  ASSERT_TRUE(host_event());  // the update's wake-up
  const auto f = frame(900);
  send(f);
  ASSERT_TRUE(host_->receive());
  ASSERT_TRUE(tx_->pop_used());
  const auto t0 = std::chrono::steady_clock::now();
  send(f);  // the bucket has ~100 bytes: waits
  EXPECT_FALSE(tx_->pop_used());
  EXPECT_EQ(metrics_.net_tx_throttled.load(), 1u);
  EXPECT_TRUE(net_->tx_limiter().blocked());
  ASSERT_TRUE(host_event());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(70));
  auto got = host_->receive();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, f);
  EXPECT_TRUE(tx_->pop_used());
  EXPECT_EQ(metrics_.net_tx_frames.load(), 2u);
}

TEST_F(NetTest, RxLimitLeavesTheTapUnreadUntilTheLimiterAllows) {
  init();
  net_->update_rate_limiters(BucketUpdate::keep(),
                             BucketUpdate::set({1, std::chrono::milliseconds(100'000), 0}),
                             BucketUpdate::keep(), BucketUpdate::keep());
  ASSERT_TRUE(host_event());
  offer_rx(2048);
  offer_rx(2048);
  host_->send(frame(100, 1));
  host_->send(frame(100, 2));
  ASSERT_TRUE(host_event());
  EXPECT_TRUE(rx_->pop_used());
  EXPECT_FALSE(rx_->pop_used());  // one frame per 100 s
  EXPECT_FALSE(net_->rx_polling());
  EXPECT_EQ(metrics_.net_rx_throttled.load(), 1u);
  EXPECT_FALSE(host_event());  // nothing spins: the TAP is not watched, the timer is far
  net_->update_rate_limiters(BucketUpdate::keep(), BucketUpdate::disable(), BucketUpdate::keep(),
                             BucketUpdate::keep());
  ASSERT_TRUE(host_event());
  EXPECT_TRUE(rx_->pop_used());  // delayed, not dropped
  EXPECT_EQ(metrics_.net_rx_frames.load(), 2u);
}

TEST_F(NetTest, ResetStopsPolling) {
  init();
  EXPECT_TRUE(net_->rx_polling());
  drv_->set_status(0);
  EXPECT_FALSE(net_->rx_polling());
  host_->send(frame(60));
  EXPECT_FALSE(readable(net_->host_event_fd()));
}

}  // namespace
}  // namespace kiln::virtio
