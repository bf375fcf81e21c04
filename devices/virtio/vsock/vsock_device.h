// virtio-vsock (device id 19): rx, tx and event queues, guest_cid in config space, and the
// Firecracker-style Unix-socket host side (muxer.h). Packets from the guest are handled when it
// kicks tx; packets for the guest go out when it kicks rx (new buffers) or when the muxer's
// epoll fd (host_event_fd) is ready.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/log_limiter.h"
#include "devices/virtio/device.h"
#include "devices/virtio/queue_drain.h"
#include "devices/virtio/vsock/muxer.h"

namespace kiln::virtio {

struct VsockOptions {
  uint64_t guest_cid = 3;
  std::string uds_path;
};

class VsockDevice : public VirtioDevice {
 public:
  // Creates the listening socket at uds_path (throws kiln::UsageError naming it).
  // `max_connections`: connections and pending host clients at once; by default
  // Muxer::connection_budget() of the open-file limit when the device is built.
  explicit VsockDevice(const VsockOptions& options,
                       std::optional<size_t> max_connections = std::nullopt);

  uint32_t device_id() const override;
  uint64_t device_features() const override;
  size_t num_queues() const override { return 3; }
  // struct virtio_vsock_config { le64 guest_cid; }
  std::span<const uint8_t> config_bytes() const override { return config_view(options_.guest_cid); }
  void activate(uint64_t features) override;
  void reset() override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  int host_event_fd() const override { return muxer_.epoll_fd(); }
  // Connections do not survive a snapshot: a restored device has none and tells the guest
  // with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue (as Firecracker does), so its
  // sockets close and it reads its CID again.
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override;

  const vsock::Muxer& muxer() const { return muxer_; }

 private:
  std::string process_tx(Queue& queue, const GuestMemory& mem);
  std::string fill_rx(Queue& queue, const GuestMemory& mem);
  // Puts the pending transport-reset event into the event queue, if it has a buffer.
  std::string send_reset_event(Queue& queue, const GuestMemory& mem);
  void handle_tx(const DescriptorChain& chain, const GuestMemory& mem);

  VsockOptions options_;
  vsock::Muxer muxer_;
  LogLimiter log_limit_;
  QueueDrain tx_drain_;
  QueueDrain rx_drain_;  // holds a popped rx chain nothing was written to yet
  QueueDrain event_drain_;
  bool reset_event_pending_ = false;  // restored: the guest must hear of the reset
};

}  // namespace kiln::virtio
