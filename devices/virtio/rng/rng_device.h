// virtio-rng (entropy device): fills each device-writable buffer the driver offers with bytes
// from getrandom(2). Optionally rate-limited by a token bucket of bytes: when it is empty the
// request waits (left on the ring) and a timerfd - the device's host event fd - wakes the
// device when enough bytes have refilled.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/log_limiter.h"
#include "base/metrics.h"
#include "base/unique_fd.h"
#include "devices/rate_limiter/token_bucket.h"
#include "devices/virtio/device.h"
#include "devices/virtio/queue_drain.h"

namespace kiln::virtio {

class RngDevice : public VirtioDevice {
 public:
  // At most this many bytes per request: a guest offering a huge buffer gets a partial fill.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  // `limit`: none for unlimited.
  explicit RngDevice(std::optional<TokenBucket> limit, Metrics* metrics = nullptr);

  uint32_t device_id() const override { return kDeviceIdRng; }
  uint64_t device_features() const override;
  size_t num_queues() const override { return 1; }
  // No configuration space: config_bytes() is empty, every byte reads as 0.
  void reset() override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  int host_event_fd() const override { return timer_.get(); }
  // Nothing of its own: a restored device starts with a full bucket.
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override;

  bool throttled() const { return throttled_; }

 private:
  // Serves chains until the ring is empty or the bucket is; returns a broken-ring reason or "".
  std::string serve(Queue& queue, const GuestMemory& mem);
  DrainStep serve_one(const DescriptorChain& chain, const GuestMemory& mem);
  // Fills `len` bytes of the chain's writable part; false if getrandom or memory failed.
  bool fill(const DescriptorChain& chain, uint32_t len, const GuestMemory& mem);
  void arm_timer(std::chrono::nanoseconds delay);
  void disarm_timer();

  std::optional<TokenBucket> limit_;
  Metrics* metrics_;
  UniqueFd timer_;  // timerfd: fires when a throttled device may continue
  bool throttled_ = false;
  QueueDrain drain_;
  std::vector<uint8_t> buffer_;
  LogLimiter log_limit_;
};

}  // namespace kiln::virtio
