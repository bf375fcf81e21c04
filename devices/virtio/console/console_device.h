// virtio-console with a single port (no MULTIPORT): the guest's hvc0. Transmitted bytes go to
// the console's output; host input waits in a bounded buffer and is copied into the receive
// buffers the driver offers. VIRTIO_CONSOLE_F_SIZE reports the terminal's columns and rows;
// set_size() + a config-change interrupt resize hvc0 when the host terminal changes.
//
// Output never blocks: the Output sink takes what it can (vmm/console_output.h). A transmit
// chain it cannot take whole stays in progress - no further chains are taken - until
// output_space() wakes the device through its host fd and the rest is written.
//
// Threads: enqueue_input() and rx_room() are called by the VMM's console reader (event-loop
// thread); queue work runs on the event-loop thread under the transport's lock; set_size() from
// the controller. A mutex guards the input buffer and the size.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "base/event_fd.h"
#include "base/log_limiter.h"
#include "devices/console_input.h"
#include "devices/virtio/device.h"
#include "devices/virtio/queue_drain.h"

namespace kiln::virtio {

class ConsoleDevice : public VirtioDevice, public ConsoleInput {
 public:
  // Takes what the host console can take now; returns the count (less: full, output_space()
  // follows once it has room).
  using Output = std::function<size_t(std::span<const uint8_t>)>;
  using Notify = std::function<void()>;
  static constexpr size_t kRxCapacity = 64 * 1024;
  static constexpr size_t kReceiveQueue = 0;
  static constexpr size_t kTransmitQueue = 1;

  // `rx_space` is called when input the buffer could not take earlier now fits.
  ConsoleDevice(Output output, Notify rx_space, uint16_t cols = 0, uint16_t rows = 0);

  uint32_t device_id() const override { return kDeviceIdConsole; }
  uint64_t device_features() const override;
  size_t num_queues() const override { return 2; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(uint64_t features) override;
  void reset() override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  int host_event_fd() const override { return wake_.fd(); }
  // Input not yet delivered and the transmit chain in progress (how much of it the host took).
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override;

  // Host input for the guest; returns how many bytes were taken (the rest does not fit).
  size_t enqueue_input(std::span<const uint8_t> bytes) override;
  size_t rx_room() const override;
  void set_size(uint16_t cols, uint16_t rows);
  // Any thread: the output sink has room again.
  void output_space() { wake_.signal(); }

 private:
  std::string receive(Queue& queue, const GuestMemory& mem);
  std::string transmit(Queue& queue, const GuestMemory& mem);

  Output output_;
  Notify rx_space_;
  EventFd wake_;  // host input waits for the guest, or the output sink has room again

  mutable std::mutex mutex_;
  std::deque<uint8_t> rx_;
  bool rx_was_full_ = false;
  bool active_ = false;
  uint16_t cols_;
  uint16_t rows_;

  QueueDrain rx_drain_;
  QueueDrain tx_drain_;     // holds the transmit chain in progress while the sink is full
  uint64_t tx_offset_ = 0;  // how much of it was taken
  std::vector<uint8_t> bytes_;
  LogLimiter log_limit_;
};

}  // namespace kiln::virtio
