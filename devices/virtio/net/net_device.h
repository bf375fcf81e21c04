// virtio-net over a host TAP (devices/virtio/net/tap.h): one RX and one TX queue, MAC and link
// status in config space, checksum/TSO offloads as far as the TAP takes them.
//
// TX (guest kick, event-loop thread): each chain's readable part - virtio_net_hdr_v1, then the
// frame - goes to the TAP with one writev straight from guest memory.
// RX (the TAP is readable: host_event_fd() is an epoll set over it): each frame is read with one
// readv straight into the next RX chain. While the guest has no RX buffers the TAP is removed
// from that epoll set (no busy loop) and frames wait in the TAP's own queue (the kernel drops
// beyond its txqueuelen, counted as the TAP's TX drops); the RX kick that brings buffers puts it
// back. A frame longer than the guest's buffer is dropped and counted (net rx_dropped); the
// buffer is reused for the next frame.
// Rate limiters (Firecracker's rx_rate_limiter / tx_rate_limiter; bytes are frame bytes): a
// blocked TX queue waits on its limiter's timer with the frame on the ring; a blocked RX leaves
// the TAP unread (dropped from the epoll set) until its timer fires. RX frames are charged once
// read (their size is known then), so one frame may run a bucket into a debt paid first.
#pragma once

#include <sys/uio.h>

#include <optional>
#include <string>
#include <vector>

#include "base/log_limiter.h"
#include "base/mac_address.h"
#include "base/metrics.h"
#include "base/unique_fd.h"
#include "devices/rate_limiter/rate_limiter.h"
#include "devices/virtio/device.h"
#include "devices/virtio/net/tap.h"
#include "devices/virtio/queue_drain.h"

namespace kiln::virtio {

struct NetOptions {
  std::string tap_name;
  std::optional<MacAddress> mac;  // none: VIRTIO_NET_F_MAC not offered (the guest picks one)
  std::optional<uint16_t> mtu;    // VIRTIO_NET_F_MTU when set
  std::optional<BucketSpec> rx_bandwidth{}, rx_ops{}, tx_bandwidth{}, tx_ops{};
};

class NetDevice : public VirtioDevice {
 public:
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;

  // Opens the TAP. Throws kiln::UsageError naming it (see Tap).
  explicit NetDevice(const NetOptions& options);

  uint32_t device_id() const override;
  uint64_t device_features() const override;
  size_t num_queues() const override { return 2; }
  std::span<const uint8_t> config_bytes() const override { return config_; }
  // Nothing of its own (frames in flight are in the TAP or the rings); the TAP, by name from
  // the configuration (or a network override), gets its offloads again on activation.
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

  void activate(uint64_t features) override;
  void reset() override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  int host_event_fd() const override { return epoll_.get(); }
  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override;

  void set_metrics(Metrics* metrics) { metrics_ = metrics; }

  // PATCH /network-interfaces (under the transport lock).
  void update_rate_limiters(const BucketUpdate& rx_bandwidth, const BucketUpdate& rx_ops,
                            const BucketUpdate& tx_bandwidth, const BucketUpdate& tx_ops);
  const RateLimiter& rx_limiter() const { return rx_limiter_; }
  const RateLimiter& tx_limiter() const { return tx_limiter_; }

  // For tests: whether the TAP is being polled for RX, and the TUN_F_* offloads it was given.
  bool rx_polling() const { return rx_polling_; }
  unsigned tap_offloads() const { return tap_offloads_; }
  const Tap& tap() const { return tap_; }

 private:
  std::string process_rx(Queue& queue, const GuestMemory& mem);
  std::string process_tx(Queue& queue, const GuestMemory& mem);
  // One RX chain: a frame from the TAP into it, or why not. `drops` counts this wake-up's.
  DrainStep receive_frame(const DescriptorChain& chain, const GuestMemory& mem, int& drops);
  void set_rx_polling(bool on);
  void watch(int fd);
  // The queue cannot be trusted any more: stop polling (the transport stops calling us).
  std::string fail(std::string why);
  void count(Metrics::Counter Metrics::*counter, uint64_t n = 1) {
    if (metrics_) Metrics::add(metrics_->*counter, n);
  }
  // One rate-limited warning line for something the guest (or the TAP) did wrong.
  void warn(const std::string& what);

  NetOptions options_;
  Tap tap_;
  UniqueFd epoll_;
  bool rx_polling_ = false;
  RateLimiter rx_limiter_;
  RateLimiter tx_limiter_;
  unsigned tap_offloads_ = 0;
  std::vector<uint8_t> config_;
  std::vector<uint8_t> overflow_;  // catches the part of a frame beyond the guest's buffer
  std::vector<iovec> iov_;
  QueueDrain rx_drain_;
  QueueDrain tx_drain_;
  LogLimiter log_limit_;
  Metrics* metrics_ = nullptr;
};

}  // namespace kiln::virtio
