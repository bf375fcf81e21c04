// virtio-mmio transport (virtio 1.x, register layout version 2) for one VirtioDevice.
//
// Register accesses run on vCPU threads; queue processing runs on the event-loop thread when a
// queue's notification eventfd fires (KVM signals it directly through an ioeventfd on the
// QueueNotify register). One mutex orders the two; InterruptStatus is atomic so the guest's
// interrupt handler never waits for device I/O.
//
// Lifecycle: the device does host work (process_host_events) only while it is live - DRIVER_OK
// set, not failed (DEVICE_NEEDS_RESET), not paused. The transport enforces that: the event loop
// watches host_event_fd(), an epoll set that holds the device's own host fd only while the device
// is live, so a failed or paused device's ready sources stay unread instead of spinning the loop.
// Queue notifications that arrive while paused are remembered and re-signalled on resume().
//
// Snapshots (Snapshottable, while paused): the registers, negotiated features, interrupt
// status and queues, then the device's own state (VirtioDevice::save_state). A restore checks
// every value against what the transport can reach before changing anything, re-activates a
// device that was live and processes every ready queue once it runs.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "base/bus.h"
#include "base/event_fd.h"
#include "base/guest_memory.h"
#include "base/log_limiter.h"
#include "base/pausable.h"
#include "base/snapshottable.h"
#include "base/unique_fd.h"
#include "devices/virtio/device.h"

namespace kiln::virtio {

class MmioTransport : public BusDevice, public Pausable, public Snapshottable {
 public:
  static constexpr uint64_t kWindowSize = 0x1000;
  static constexpr uint64_t kQueueNotifyOffset = 0x50;
  static constexpr uint32_t kMagic = 0x74726976;     // "virt"
  static constexpr uint32_t kVendorId = 0x4e4c494b;  // "KILN"

  using RaiseIrq = std::function<void()>;
  MmioTransport(std::shared_ptr<VirtioDevice> device, const GuestMemory& mem, RaiseIrq raise_irq);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // One eventfd per queue, signalled when the driver notifies that queue. The VMM registers
  // them as KVM ioeventfds (datamatch = queue index) and watches them in the event loop.
  const std::vector<EventFd>& queue_events() const { return queue_events_; }
  // Event-loop thread: the driver kicked queue `index`.
  void process_queue(size_t index);
  // What the event loop watches (level-triggered) for the device's host work; -1 when the device
  // has no host fd. Readable only while the device is live and its own host fd is ready.
  int host_event_fd() const { return host_gate_.get(); }
  // Event-loop thread: host_event_fd() is ready.
  void process_host_events();
  // Stops all device work (queue processing and host events) until resume(); kicks that arrive
  // meanwhile are processed after resume(). Waits for work in progress.
  void pause() override;
  void resume() override;
  // Throws kiln::Error naming the device if it cannot be snapshotted.
  std::vector<uint8_t> save() const override;
  void restore(std::span<const uint8_t> state) override;
  // "virtio-blk", "virtio-net", ...: the device in messages.
  std::string device_name() const;
  // The device's configuration changed (e.g. disk resized): bump the generation, interrupt.
  void config_changed();
  // Runs `fn` on the device with queue processing excluded (e.g. to swap a disk's backing file).
  template <typename Fn>
  void with_device(Fn fn) {
    std::lock_guard lock(mutex_);
    fn(*device_);
  }

  uint32_t status() const;
  uint32_t interrupt_status() const { return interrupt_status_.load(); }
  VirtioDevice& device() { return *device_; }

 private:
  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void reset_locked();
  void fail_locked(const std::string& why);  // DEVICE_NEEDS_RESET + config interrupt
  void raise(uint32_t bits);
  // Puts the device's host fd into host_gate_ exactly while it may work (live and not paused).
  void update_host_watch_locked();
  Queue* selected_queue();

  std::shared_ptr<VirtioDevice> device_;
  const GuestMemory& mem_;
  RaiseIrq raise_irq_;
  std::vector<EventFd> queue_events_;

  mutable std::mutex mutex_;
  std::vector<Queue> queues_;
  uint32_t status_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t config_generation_ = 0;
  bool activated_ = false;  // DRIVER_OK and not failed since
  bool paused_ = false;
  std::vector<bool> deferred_kicks_;  // queues kicked while paused
  UniqueFd host_gate_;                // epoll set over the device's host fd; invalid: none
  bool host_watched_ = false;
  LogLimiter features_log_;  // the guest can repeat a refused negotiation forever
  LogLimiter failure_log_;   // and reset + break a queue forever
  std::atomic<uint32_t> interrupt_status_{0};
};

}  // namespace kiln::virtio
