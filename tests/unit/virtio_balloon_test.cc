// virtio-balloon through the mmio transport and the host-side virtqueue driver: inflated pages
// are given back to the host (they read as zeros again), page numbers outside RAM are skipped,
// the statistics buffer is held until the polling timer returns it, queues are numbered by the
// negotiated features, and only `actual` in config space is the driver's to write.
#include "devices/virtio/balloon/balloon_device.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <memory>
#include <vector>

#include "devices/virtio/mmio_transport.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::MmioDriver;
using testsupport::VirtqueueDriver;
namespace reg = testsupport::mmio;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kPage = 4096;
// Guest RAM pages from here on are what the tests inflate (the rings and buffers are below).
constexpr uint64_t kFirstFreePfn = (4 * kMiB) / kPage;

class BalloonTest : public ::testing::Test {
 protected:
  // `wanted` masks the device's features (the driver's choice).
  void make(BalloonOptions options, uint64_t wanted = ~uint64_t{0}) {
    balloon = std::make_shared<BalloonDevice>(options, &metrics);
    transport = std::make_unique<MmioTransport>(balloon, mem, [this] { ++irqs; });
    drv = std::make_unique<MmioDriver>(*transport);
    std::vector<const VirtqueueDriver*> qs;
    size_t n = 2;
    const uint64_t offered = drv->device_features() & wanted;
    if (offered & feature(balloon::kFStatsVq)) ++n;
    if (offered & feature(balloon::kFReporting)) ++n;
    for (size_t i = 0; i < n; ++i) {
      queues.push_back(std::make_unique<VirtqueueDriver>(mem, 0x10000 * (i + 1), 16,
                                                         0x100000 * (i + 1), kMiB / 2));
      qs.push_back(queues.back().get());
    }
    features = drv->init(wanted, qs);
  }
  // Fills `pages` pages from `pfn` with 0xaa (the guest used them).
  void touch(uint64_t pfn, uint64_t pages) { mem.fill(pfn * kPage, 0xaa, pages * kPage); }
  bool page_is_zero(uint64_t pfn) {
    std::vector<uint8_t> page(kPage);
    mem.read(pfn * kPage, page);
    return std::all_of(page.begin(), page.end(), [](uint8_t b) { return b == 0; });
  }
  // Sends `pfns` on queue `index` (a readable buffer) and lets the device serve it.
  void send_pfns(size_t index, const std::vector<uint32_t>& pfns) {
    VirtqueueDriver& q = *queues[index];
    const uint32_t len = static_cast<uint32_t>(pfns.size() * sizeof(uint32_t));
    const Gpa buf = q.alloc(len);
    mem.write(buf, std::span(reinterpret_cast<const uint8_t*>(pfns.data()), len));
    q.submit({{buf, len, false}});
    transport->process_queue(index);
  }
  // A statistics buffer of (tag, value) pairs on queue 2.
  void send_stats(const std::vector<balloon::Stat>& stats) {
    VirtqueueDriver& q = *queues[2];
    const uint32_t len = static_cast<uint32_t>(stats.size() * sizeof(balloon::Stat));
    const Gpa buf = q.alloc(len);
    mem.write(buf, std::span(reinterpret_cast<const uint8_t*>(stats.data()), len));
    q.submit({{buf, len, false}});
    transport->process_queue(2);
  }
  bool timer_fired(int timeout_ms) {
    pollfd p{balloon->host_event_fd(), POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1;
  }
  uint32_t config32(uint64_t offset) { return drv->read32(reg::kConfig + offset); }

  GuestMemory mem{{{0, 16 * kMiB}}};
  Metrics metrics;
  std::shared_ptr<BalloonDevice> balloon;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<MmioDriver> drv;
  std::vector<std::unique_ptr<VirtqueueDriver>> queues;
  uint64_t features = 0;
  int irqs = 0;
};

TEST_F(BalloonTest, OffersOnlyTheFeaturesItWasGiven) {
  make({1024, false, 0, false});
  EXPECT_EQ(drv->read32(reg::kDeviceId), balloon::kDeviceId);
  EXPECT_EQ(features & feature(balloon::kFStatsVq), 0u);
  EXPECT_EQ(features & feature(balloon::kFDeflateOnOom), 0u);
  EXPECT_EQ(features & feature(balloon::kFReporting), 0u);
  EXPECT_EQ(config32(balloon::kConfigNumPages), 1024u);
  EXPECT_EQ(balloon->num_queues(), 2u);
}

TEST_F(BalloonTest, OffersStatisticsDeflateOnOomAndReportingWhenAsked) {
  make({0, true, 2, true});
  EXPECT_NE(features & feature(balloon::kFStatsVq), 0u);
  EXPECT_NE(features & feature(balloon::kFDeflateOnOom), 0u);
  EXPECT_NE(features & feature(balloon::kFReporting), 0u);
  EXPECT_EQ(balloon->num_queues(), 4u);
}

TEST_F(BalloonTest, InflatedPagesGoBackToTheHostAndReadAsZeros) {
  make({64, false, 0, false});
  touch(kFirstFreePfn, 8);
  // Two runs (4 pages, then 2) and a page left in the guest's use between them.
  send_pfns(0,
            {static_cast<uint32_t>(kFirstFreePfn), static_cast<uint32_t>(kFirstFreePfn + 1),
             static_cast<uint32_t>(kFirstFreePfn + 2), static_cast<uint32_t>(kFirstFreePfn + 3),
             static_cast<uint32_t>(kFirstFreePfn + 5), static_cast<uint32_t>(kFirstFreePfn + 6)});
  const auto used = queues[0]->pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 0u);
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(balloon->released_bytes(), 6 * kPage);
  for (uint64_t p : {0, 1, 2, 3, 5, 6}) EXPECT_TRUE(page_is_zero(kFirstFreePfn + p)) << p;
  EXPECT_FALSE(page_is_zero(kFirstFreePfn + 4));
  EXPECT_FALSE(page_is_zero(kFirstFreePfn + 7));
  // Deflating hands the pages back to the guest: nothing to release, the buffer returns.
  send_pfns(1, {static_cast<uint32_t>(kFirstFreePfn)});
  ASSERT_TRUE(queues[1]->pop_used());
  EXPECT_EQ(balloon->released_bytes(), 6 * kPage);
  EXPECT_EQ(metrics.balloon_inflate_count.load(), 1u);
  EXPECT_EQ(metrics.balloon_deflate_count.load(), 1u);
  EXPECT_EQ(metrics.balloon_released_bytes.load(), 6 * kPage);
  EXPECT_EQ(metrics.balloon_errors.load(), 0u);
}

TEST_F(BalloonTest, PageNumbersOutsideRamAreSkippedAndTheRestReleased) {
  make({64, false, 0, false});
  touch(kFirstFreePfn, 1);
  send_pfns(0, {0xffffffffu, static_cast<uint32_t>(16 * kMiB / kPage),
                static_cast<uint32_t>(kFirstFreePfn)});
  ASSERT_TRUE(queues[0]->pop_used());
  EXPECT_EQ(balloon->released_bytes(), kPage);
  EXPECT_TRUE(page_is_zero(kFirstFreePfn));
  // A buffer past the end of guest memory fails that request only.
  queues[0]->submit({{16 * kMiB - 8, 64, false}});
  transport->process_queue(0);
  ASSERT_TRUE(queues[0]->pop_used());
  EXPECT_EQ(transport->status() & kStatusDeviceNeedsReset, 0u);
  EXPECT_EQ(metrics.balloon_errors.load(), 3u);  // two page numbers, one chain
}

TEST_F(BalloonTest, AHugeInflateBufferIsCutToItsLimit) {
  make({64, false, 0, false});
  std::vector<uint32_t> pfns(8192);
  for (size_t i = 0; i < pfns.size(); ++i)
    pfns[i] = static_cast<uint32_t>(kFirstFreePfn + i % 1024);
  send_pfns(0, pfns);
  ASSERT_TRUE(queues[0]->pop_used());
  // 4096 numbers read: the first 1024 pages four times over; the rest of the buffer is ignored.
  EXPECT_EQ(balloon->released_bytes(), 4 * 1024 * kPage);
}

TEST_F(BalloonTest, TheDriverWritesActualButNotTheTarget) {
  make({300, false, 0, false});
  drv->write32(reg::kConfig + balloon::kConfigActual, 120);
  drv->write32(reg::kConfig + balloon::kConfigNumPages, 5);
  EXPECT_EQ(config32(balloon::kConfigActual), 120u);
  EXPECT_EQ(balloon->actual_pages(), 120u);
  EXPECT_EQ(config32(balloon::kConfigNumPages), 300u);
  // A new target from the host.
  balloon->set_target_pages(512);
  EXPECT_EQ(config32(balloon::kConfigNumPages), 512u);
}

TEST_F(BalloonTest, StatisticsBufferIsHeldUntilThePollingTimerReturnsIt) {
  make({0, false, 1, false});
  send_stats({{balloon::kFreeMemory, 111 * kMiB},
              {balloon::kTotalMemory, 256 * kMiB},
              {999, 7}});               // a tag from a newer driver: ignored
  EXPECT_FALSE(queues[2]->pop_used());  // held
  EXPECT_EQ(balloon->stats().updates, 1u);
  EXPECT_EQ(balloon->stats().values[balloon::kFreeMemory], 111 * kMiB);
  EXPECT_EQ(balloon->stats().values[balloon::kTotalMemory], 256 * kMiB);
  EXPECT_FALSE(balloon->stats().values[balloon::kSwapIn]);
  // The timer (1 s) gives it back: the driver refills it with fresh figures.
  ASSERT_TRUE(timer_fired(3000));
  transport->process_host_events();
  const auto used = queues[2]->pop_used();
  ASSERT_TRUE(used);
  send_stats({{balloon::kFreeMemory, 99 * kMiB}});
  EXPECT_EQ(balloon->stats().updates, 2u);
  EXPECT_EQ(balloon->stats().values[balloon::kFreeMemory], 99 * kMiB);
  EXPECT_EQ(metrics.balloon_stats_updates.load(), 2u);
}

TEST_F(BalloonTest, ANewIntervalAsksForStatisticsAtOnce) {
  make({0, false, 60, false});
  send_stats({{balloon::kFreeMemory, 1}});
  EXPECT_FALSE(timer_fired(100));  // 60 s away
  balloon->set_stats_interval(2);
  ASSERT_TRUE(timer_fired(1000));
  transport->process_host_events();
  EXPECT_TRUE(queues[2]->pop_used());
}

TEST_F(BalloonTest, ADriverPostingASecondStatisticsBufferGetsTheFirstBack) {
  make({0, false, 30, false});
  send_stats({{balloon::kFreeMemory, 1}});
  send_stats({{balloon::kFreeMemory, 2}});
  const auto used = queues[2]->pop_used();
  ASSERT_TRUE(used);
  EXPECT_FALSE(queues[2]->pop_used());  // the second is held
  EXPECT_EQ(balloon->stats().values[balloon::kFreeMemory], 2u);
}

TEST_F(BalloonTest, QueuesAreNumberedByTheNegotiatedFeatures) {
  // Statistics offered but not taken by the driver: queue 2 is free page reporting.
  make({0, false, 5, true}, ~feature(balloon::kFStatsVq));
  ASSERT_EQ(queues.size(), 3u);
  touch(kFirstFreePfn, 4);
  VirtqueueDriver& q = *queues[2];
  q.submit({{kFirstFreePfn * kPage, 4 * kPage, true}});
  transport->process_queue(2);
  ASSERT_TRUE(q.pop_used());
  EXPECT_EQ(balloon->released_bytes(), 4 * kPage);
  EXPECT_TRUE(page_is_zero(kFirstFreePfn + 3));
  EXPECT_EQ(balloon->stats().updates, 0u);
}

TEST_F(BalloonTest, AStateWithFeaturesItDoesNotOfferIsRefused) {
  make({0, false, 0, false});
  auto state = balloon->save_state();
  ASSERT_TRUE(state);
  (*state)[10] |= 1 << balloon::kFStatsVq;  // acked features (after version, target, actual)
  std::vector<Queue> queues(2);
  EXPECT_THROW(balloon->restore_state(*state, queues), Error);
}

TEST_F(BalloonTest, ResetDisarmsTheStatisticsTimer) {
  make({0, false, 1, false});
  send_stats({{balloon::kFreeMemory, 1}});
  drv->write32(reg::kStatus, 0);
  EXPECT_FALSE(timer_fired(1500));
}

}  // namespace
}  // namespace kiln::virtio
