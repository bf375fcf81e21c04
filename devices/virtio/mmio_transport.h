// virtio-mmio transport (virtio 1.x, register layout version 2) for one VirtioDevice.
//
// Register accesses run on vCPU threads; queue processing runs on the event-loop thread when a
// queue's notification eventfd fires (KVM signals it directly through an ioeventfd on the
// QueueNotify register). One mutex orders the two; InterruptStatus is atomic so the guest's
// interrupt handler never waits for device I/O.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/virtio/device.h"
#include "vmm/bus.h"
#include "vmm/event_fd.h"
#include "vmm/guest_memory.h"

namespace kiln::virtio {

class MmioTransport : public BusDevice {
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
  // Event-loop thread: the device's host_event_fd() is ready.
  void process_host_events();
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
  bool activated_ = false;
  std::atomic<uint32_t> interrupt_status_{0};
};

}  // namespace kiln::virtio
