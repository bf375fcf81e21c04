#include "devices/virtio/balloon/balloon_device.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "devices/virtio/chain_io.h"

namespace kiln::virtio {

using namespace balloon;

namespace {

// Linux sends at most 256 PFNs per buffer; more than this in one chain is not a driver's.
constexpr uint64_t kMaxPfnsPerChain = 4096;
constexpr size_t kPfnChunk = 256;
constexpr uint64_t kMaxStatsPerBuffer = 64;

uint32_t get32(const std::vector<uint8_t>& config, uint64_t offset) {
  uint32_t v = 0;
  std::memcpy(&v, config.data() + offset, sizeof(v));
  return v;
}

void put32(std::vector<uint8_t>& config, uint64_t offset, uint32_t v) {
  std::memcpy(config.data() + offset, &v, sizeof(v));
}

}  // namespace

BalloonDevice::BalloonDevice(const BalloonOptions& options, Metrics* metrics)
    : options_(options), metrics_(metrics), config_(kConfigSize, 0) {
  put32(config_, kConfigNumPages, options_.target_pages);
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) throw_errno("timerfd_create for virtio-balloon");
  timer_ = UniqueFd(fd);
}

uint64_t BalloonDevice::device_features() const {
  uint64_t f = feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc);
  if (options_.stats_interval_s > 0) f |= feature(kFStatsVq);
  if (options_.deflate_on_oom) f |= feature(kFDeflateOnOom);
  if (options_.free_page_reporting) f |= feature(kFReporting);
  return f;
}

size_t BalloonDevice::num_queues() const {
  return 2 + (options_.stats_interval_s > 0 ? 1 : 0) + (options_.free_page_reporting ? 1 : 0);
}

QueueRole BalloonDevice::role(size_t index) const {
  if (index == 0) return QueueRole::kInflate;
  if (index == 1) return QueueRole::kDeflate;
  size_t next = 2;
  if (acked_ & feature(kFStatsVq)) {
    if (index == next) return QueueRole::kStats;
    ++next;
  }
  if ((acked_ & feature(kFReporting)) && index == next) return QueueRole::kReporting;
  return QueueRole::kNone;
}

void BalloonDevice::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // Only `actual` is the driver's to write; the rest of a write is ignored.
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    if (at >= offset && at >= kConfigActual && at < kConfigActual + 4) config_[at] = data[i];
  }
}

void BalloonDevice::activate(uint64_t features) {
  acked_ = features;
  if (acked_ & feature(kFStatsVq)) arm_timer(options_.stats_interval_s);
}

void BalloonDevice::reset() {
  acked_ = 0;
  stats_head_.reset();
  for (QueueDrain& d : drains_) d.reset();
  itimerspec off{};
  ::timerfd_settime(timer_.get(), 0, &off, nullptr);
}

std::string BalloonDevice::process_queue(size_t index, Queue& queue, const GuestMemory& mem) {
  switch (role(index)) {
    case QueueRole::kInflate:
      return inflate(queue, mem, true);
    case QueueRole::kDeflate:
      return inflate(queue, mem, false);
    case QueueRole::kStats:
      return take_stats(queue, mem);
    case QueueRole::kReporting:
      return report(queue, mem);
    case QueueRole::kNone:
      break;
  }
  return "";
}

std::string BalloonDevice::inflate(Queue& queue, const GuestMemory& mem, bool release) {
  return drains_[release ? 0 : 1]
      .drain(
          queue, mem, [&](const std::string& error) { warn("bad chain: " + error); },
          [&](const DescriptorChain& chain) {
            // Deflated pages need nothing: the guest may use them again (no MUST_TELL_HOST);
            // they fault in fresh.
            count(release ? &Metrics::balloon_inflate_count : &Metrics::balloon_deflate_count);
            if (!release) return DrainStep::used(0);
            uint64_t count = chain.readable_bytes / sizeof(uint32_t);
            if (count > kMaxPfnsPerChain) {
              warn(fmt::format("inflate buffer of {} page numbers cut to {}", count,
                               kMaxPfnsPerChain));
              count = kMaxPfnsPerChain;
            }
            for (uint64_t done = 0; done < count;) {
              const size_t n = static_cast<size_t>(std::min<uint64_t>(kPfnChunk, count - done));
              pfns_.resize(n);
              if (!chain_read(
                      mem, chain, done * sizeof(uint32_t),
                      std::span(reinterpret_cast<uint8_t*>(pfns_.data()), n * sizeof(uint32_t))))
                break;
              release_pfns(mem, pfns_);
              done += n;
            }
            return DrainStep::used(0);
          })
      .error;
}

void BalloonDevice::release_pfns(const GuestMemory& mem, std::span<const uint32_t> pfns) {
  // Runs of consecutive frames go in one madvise.
  size_t i = 0;
  while (i < pfns.size()) {
    size_t j = i + 1;
    while (j < pfns.size() && pfns[j] == pfns[j - 1] + 1) ++j;
    const uint64_t gpa = uint64_t{pfns[i]} << kPageShift;
    const uint64_t len = uint64_t{j - i} << kPageShift;
    const uint64_t freed = mem.discard(gpa, len);
    if (freed == 0 && mem.page_size() <= len)
      warn(fmt::format("inflated pages at {:#x} (+{:#x}) are not guest RAM", gpa, len));
    released_ += freed;
    count(&Metrics::balloon_released_bytes, freed);
    i = j;
  }
}

std::string BalloonDevice::report(Queue& queue, const GuestMemory& mem) {
  return drains_[3]
      .drain(
          queue, mem, [&](const std::string& error) { warn("bad reporting chain: " + error); },
          [&](const DescriptorChain& chain) {
            // Each buffer is a free range of guest RAM (checked when popped).
            count(&Metrics::balloon_report_count);
            for (const ChainBuffer& b : chain.buffers) {
              const uint64_t freed = mem.discard(b.addr, b.len);
              released_ += freed;
              count(&Metrics::balloon_released_bytes, freed);
            }
            return DrainStep::used(0);
          })
      .error;
}

std::string BalloonDevice::take_stats(Queue& queue, const GuestMemory& mem) {
  Queue::Pop pop;
  for (uint32_t i = 0; i <= queue.size; ++i) {  // at most a ring's worth per call
    queue.pop(mem, pop);
    switch (pop.kind) {
      case Queue::Pop::Kind::kBrokenRing:
        return pop.error;
      case Queue::Pop::Kind::kBadChain:
        warn("bad statistics chain: " + pop.error);
        continue;
      case Queue::Pop::Kind::kEmpty:
        if (queue.enable_notification(mem)) continue;
        return "";
      case Queue::Pop::Kind::kChain:
        break;
    }
    // A driver that posts another buffer before we returned the first gets the first back.
    if (stats_head_ && !queue.add_used(mem, *stats_head_, 0))
      return "used ring is outside guest memory";
    const uint64_t n =
        std::min<uint64_t>(pop.chain.readable_bytes / sizeof(Stat), kMaxStatsPerBuffer);
    for (uint64_t k = 0; k < n; ++k) {
      Stat s{};
      if (!chain_read(mem, pop.chain, k * sizeof(Stat),
                      std::span(reinterpret_cast<uint8_t*>(&s), sizeof(s))))
        break;
      const uint16_t tag = s.tag;  // copies: no reference may bind to a packed member
      const uint64_t value = s.val;
      if (tag < kStatTags) stats_.values[tag] = value;  // unknown tags: a newer driver's
    }
    ++stats_.updates;
    count(&Metrics::balloon_stats_updates);
    stats_head_ = pop.chain.head;
  }
  return "";
}

std::string BalloonDevice::process_host_events(std::span<Queue> queues, const GuestMemory& mem) {
  uint64_t expirations = 0;
  if (::read(timer_.get(), &expirations, sizeof(expirations)) < 0) return "";
  if (!(acked_ & feature(kFStatsVq)) || queues.size() <= 2) return "";
  Queue& q = queues[2];
  if (!stats_head_) return take_stats(q, mem);  // e.g. after a restore
  // Give the buffer back: the driver refills it with fresh figures and posts it again.
  const uint16_t head = *stats_head_;
  stats_head_.reset();
  if (!q.add_used(mem, head, 0)) return "used ring is outside guest memory";
  return "";
}

void BalloonDevice::set_target_pages(uint32_t pages) {
  options_.target_pages = pages;
  put32(config_, kConfigNumPages, pages);
}

void BalloonDevice::set_stats_interval(uint32_t seconds) {
  options_.stats_interval_s = seconds;
  if (acked_ & feature(kFStatsVq)) arm_timer(0);
}

uint32_t BalloonDevice::target_pages() const {
  return get32(config_, kConfigNumPages);
}

uint32_t BalloonDevice::actual_pages() const {
  return get32(config_, kConfigActual);
}

void BalloonDevice::arm_timer(uint32_t first_s) {
  itimerspec spec{};
  spec.it_value.tv_sec = first_s;
  if (first_s == 0) spec.it_value.tv_nsec = 1;
  spec.it_interval.tv_sec = options_.stats_interval_s;
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

void BalloonDevice::count(Metrics::Counter Metrics::*counter, uint64_t n) {
  if (metrics_ && n) Metrics::add(metrics_->*counter, n);
}

void BalloonDevice::warn(const std::string& what) {
  count(&Metrics::balloon_errors);
  if (log_limit_.allow()) spdlog::warn("virtio-balloon: {} ({} so far)", what, log_limit_.events());
}

std::optional<std::vector<uint8_t>> BalloonDevice::save_state() const {
  snapshot::ByteWriter w;
  w.u16(1);
  w.u32(target_pages());
  w.u32(actual_pages());
  w.u64(acked_);
  w.u8(stats_head_ ? 1 : 0);
  return w.take();
}

void BalloonDevice::restore_state(std::span<const uint8_t> state, std::span<Queue> queues) {
  snapshot::ByteReader r(state.data(), state.size(), "virtio-balloon state");
  r.expect_version(1);
  const uint32_t target = r.u32();
  const uint32_t actual = r.u32();
  const uint64_t acked = r.u64();
  const bool held = r.u8() != 0;
  r.finish();
  if (acked & ~device_features())
    throw Error("virtio-balloon state: features this device does not offer were acknowledged");
  set_target_pages(target);
  put32(config_, kConfigActual, actual);
  acked_ = acked;
  // The held statistics buffer goes back to the ring: the first tick takes it again.
  if (held && (acked_ & feature(kFStatsVq)) && queues.size() > 2) queues[2].undo_pop();
}

}  // namespace kiln::virtio
