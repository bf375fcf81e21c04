// The VM's virtio-mmio devices: built from the VmConfig (files opened and checked before any VM
// exists), given a window and an interrupt line, announced on the kernel command line, and
// attached to KVM (irqfd + ioeventfd), the MMIO bus and the event loop.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"
#include "base/bus.h"
#include "base/event_fd.h"
#include "base/event_loop.h"
#include "base/kvm.h"
#include "base/metrics.h"
#include "base/snapshot/state_file.h"
#include "devices/virtio/block/block_device.h"
#include "devices/virtio/console/console_device.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net/net_device.h"
#include "vmm/command.h"
#include "vmm/resource_allocator.h"
#include "vmm/vm_config.h"

namespace kiln::virtio {
class BalloonDevice;
}

namespace kiln {

// How a virtio-console reaches the host console (used when the config asks for one).
struct ConsoleHooks {
  std::function<size_t(std::span<const uint8_t>)> write;  // returns what it took
  std::function<void()> rx_space;                         // the device has input room again
  uint16_t cols = 0, rows = 0;                            // the terminal's size, 0 when unknown
};

class VirtioDevices {
 public:
  // Throws kiln::UsageError for a bad drive (missing, unreadable, size, locked), a TAP that
  // cannot be opened (no CAP_NET_ADMIN, busy, not a TAP) or a shared directory that is gone.
  VirtioDevices(const VmConfig& config, const GuestMemory& mem, Metrics& metrics,
                ConsoleHooks console = {});

  // Kernel parameters for every device, and root=/dev/vda rw for a root drive.
  std::string kernel_parameters() const;
  void attach(VmFd& vm, Bus& mmio_bus, EventLoop& loop);
  // Swaps the image behind drive `id` and raises a config change. Throws UsageError.
  void replace_drive(const std::string& id, const std::string& path);
  // New rate-limiter buckets for drive `id` / interface `iface_id` (PATCH), applied under the
  // device's transport lock. Throws UsageError for an unknown id.
  void update_drive_rate_limiter(const std::string& id, const RateLimiterUpdate& update);
  void update_net_rate_limiters(const std::string& iface_id, const RateLimiterUpdate& rx,
                                const RateLimiterUpdate& tx);
  // The balloon (throws UsageError without one): a new target (the guest gets a config-change
  // interrupt), a new statistics interval, and its figures.
  void set_balloon_target(uint64_t amount_mib);
  void set_balloon_stats_interval(uint32_t seconds);
  BalloonStatsInfo balloon_stats() const;
  // The block device of drive `id`, or null.
  std::shared_ptr<virtio::BlockDevice> drive(const std::string& id) const;
  // Stops / restarts every device's queue and host work (see MmioTransport::pause).
  void pause();
  void resume();
  // Snapshots: each device's section ("device/virtio/N", N its slot). A device that cannot be
  // snapshotted now (virtio-fs holding a file deleted on the host) refuses (UsageError naming
  // it) before any section is added; restore() refuses a state file whose devices differ from
  // this configuration's.
  void save(snapshot::StateWriter& writer) const;
  void restore(const snapshot::StateFile& state);
  // The virtio-console, or null.
  std::shared_ptr<virtio::ConsoleDevice> console() const { return console_; }
  // The host terminal changed size: tell the guest's hvc0 (config-change interrupt).
  void console_resized(uint16_t cols, uint16_t rows);

  struct Slot {
    MmioSlot resources;
    std::shared_ptr<EventFd> irq;
    std::shared_ptr<virtio::MmioTransport> transport;
  };
  const std::vector<Slot>& slots() const { return slots_; }

 private:
  // Gives `device` a window, an interrupt line and a transport; returns the transport.
  std::shared_ptr<virtio::MmioTransport> add(std::shared_ptr<virtio::VirtioDevice> device,
                                             const GuestMemory& mem);

  // A block device kept with its type and drive id when built (no downcast to find it again).
  struct Drive {
    std::string id;
    std::shared_ptr<virtio::BlockDevice> device;
    std::shared_ptr<virtio::MmioTransport> transport;
  };
  const Drive* find_drive(const std::string& id) const;
  struct Net {
    std::string iface_id;
    std::shared_ptr<virtio::NetDevice> device;
    std::shared_ptr<virtio::MmioTransport> transport;
  };

  ResourceAllocator allocator_{x86::kVirtioMmioBase, x86::kVirtioMmioEnd, x86::kFirstDeviceIrq,
                               x86::kLastDeviceIrq};
  std::vector<Slot> slots_;
  std::vector<Drive> drives_;
  std::vector<Net> nets_;
  bool root_drive_ = false;
  std::shared_ptr<virtio::BalloonDevice> balloon_;
  std::shared_ptr<virtio::MmioTransport> balloon_transport_;
  std::shared_ptr<virtio::ConsoleDevice> console_;
  std::shared_ptr<virtio::MmioTransport> console_transport_;
};

}  // namespace kiln
