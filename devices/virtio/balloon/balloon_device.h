// virtio-balloon: the host sets a target (pages the guest should hand over); the guest inflates
// by sending the page frame numbers of pages it gave up (Kiln releases their memory:
// GuestMemory::discard, so the VMM's RSS falls), deflates by sending those it takes back, and
// reports `actual` in config space. Optional: a statistics queue (the driver's buffer is held
// and given back every polling interval, a timerfd, so the guest refills it with fresh
// figures), DEFLATE_ON_OOM (the guest's driver deflates under memory pressure) and free page
// reporting (the guest hands over free ranges, released like inflated pages).
//
// Every value from the guest is checked: a PFN outside RAM is skipped (and counted), a buffer
// is read in bounded chunks, a stats buffer's unknown tags are ignored.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/log_limiter.h"
#include "base/metrics.h"
#include "base/unique_fd.h"
#include "devices/virtio/balloon/virtio_balloon_spec.h"
#include "devices/virtio/device.h"
#include "devices/virtio/queue_drain.h"

namespace kiln::virtio {

struct BalloonOptions {
  uint32_t target_pages = 0;      // 4 KiB pages
  bool deflate_on_oom = false;    // VIRTIO_BALLOON_F_DEFLATE_ON_OOM
  uint32_t stats_interval_s = 0;  // 0: no statistics queue
  bool free_page_reporting = false;
};

// The latest statistics the guest sent (absent tags: nullopt), and when.
struct BalloonStats {
  std::array<std::optional<uint64_t>, balloon::kStatTags> values{};
  uint64_t updates = 0;  // statistics buffers received
};

class BalloonDevice : public VirtioDevice {
 public:
  explicit BalloonDevice(const BalloonOptions& options, Metrics* metrics = nullptr);

  uint32_t device_id() const override { return balloon::kDeviceId; }
  uint64_t device_features() const override;
  size_t num_queues() const override;
  std::span<const uint8_t> config_bytes() const override { return config_; }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  void activate(uint64_t features) override;
  void reset() override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  // The statistics timer.
  int host_event_fd() const override { return timer_.get(); }
  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override;
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

  // Under the transport lock (with_device); the caller then signals a config change.
  void set_target_pages(uint32_t pages);
  // A new polling interval (> 0, stats enabled): the next statistics are asked for at once.
  void set_stats_interval(uint32_t seconds);
  uint32_t target_pages() const;
  uint32_t actual_pages() const;
  const BalloonStats& stats() const { return stats_; }
  uint64_t released_bytes() const { return released_; }

 private:
  balloon::QueueRole role(size_t index) const;
  std::string inflate(Queue& queue, const GuestMemory& mem, bool release);
  std::string report(Queue& queue, const GuestMemory& mem);
  // Takes the driver's statistics buffer (if it posted one) and keeps it until the next tick.
  std::string take_stats(Queue& queue, const GuestMemory& mem);
  void arm_timer(uint32_t first_s);
  void release_pfns(const GuestMemory& mem, std::span<const uint32_t> pfns);
  // Logs (rate-limited) and counts a bad request from the guest.
  void warn(const std::string& what);
  void count(Metrics::Counter Metrics::*counter, uint64_t n = 1);

  BalloonOptions options_;
  Metrics* metrics_;
  std::vector<uint8_t> config_;
  uint64_t acked_ = 0;
  UniqueFd timer_;
  std::optional<uint16_t> stats_head_;  // the held statistics buffer
  BalloonStats stats_;
  uint64_t released_ = 0;
  std::vector<uint32_t> pfns_;
  QueueDrain drains_[4];
  LogLimiter log_limit_;
};

}  // namespace kiln::virtio
