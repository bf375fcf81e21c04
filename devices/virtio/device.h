// What a virtio device implements; the transport (virtio-mmio) does the rest: registers,
// feature negotiation, status, queue setup and interrupts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/error.h"
#include "base/guest_memory.h"
#include "base/snapshot/bytes.h"
#include "devices/virtio/queue.h"

namespace kiln::virtio {

// The one bounds-checked read of a device's configuration space, given as bytes: copies
// [offset, offset + out.size()) of `config` into `out`; bytes past its end (or an offset from the
// guest far past it) read as 0.
inline void read_config_bytes(std::span<const uint8_t> config, uint64_t offset,
                              std::span<uint8_t> out) {
  std::fill(out.begin(), out.end(), uint8_t{0});
  if (offset >= config.size()) return;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), config.size() - offset));
  std::memcpy(out.data(), config.data() + offset, n);
}

template <typename T>
std::span<const uint8_t> config_view(const T& config) {
  static_assert(std::is_trivially_copyable_v<T>);
  return {reinterpret_cast<const uint8_t*>(&config), sizeof(T)};
}

// The save_state() of a device with no state of its own beyond the transport's (a version
// alone), and its restore.
inline std::vector<uint8_t> versioned_empty_state() {
  snapshot::ByteWriter w;
  w.u16(1);
  return w.take();
}
inline void restore_versioned_empty_state(std::span<const uint8_t> state, const std::string& what) {
  snapshot::ByteReader r(state.data(), state.size(), what);
  r.expect_version(1);
  r.finish();
}

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Every feature the device offers, transport bits (VERSION_1, EVENT_IDX, INDIRECT) included.
  virtual uint64_t device_features() const = 0;
  virtual size_t num_queues() const = 0;
  virtual uint16_t max_queue_size() const { return Queue::kMaxSize; }

  // Device configuration space as bytes (empty: none). Valid until the device changes it;
  // read under the transport lock.
  virtual std::span<const uint8_t> config_bytes() const { return {}; }
  // Reads the configuration space (offset from the start of the config area; offset and size
  // come from the guest). A device whose config changes outside the transport lock overrides
  // this, snapshots its config and reads it with read_config_bytes().
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const {
    read_config_bytes(config_bytes(), offset, data);
  }
  virtual void write_config(uint64_t /*offset*/, std::span<const uint8_t> /*data*/) {}

  // The driver set DRIVER_OK with these negotiated features.
  virtual void activate(uint64_t /*features*/) {}
  // The driver wrote 0 to Status; drop every in-flight request.
  virtual void reset() {}

  // Runs on the event-loop thread when queue `index` was kicked: pop chains, complete them with
  // queue.add_used(). Returns "" or, when the device can no longer trust the queue, the reason
  // (the transport then sets DEVICE_NEEDS_RESET).
  virtual std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) = 0;

  // Snapshots, while the transport is paused (no queue or host work runs). The device's own
  // state beyond the transport's (registers, features, queues); nullopt: this device cannot be
  // snapshotted (the snapshot is refused naming it).
  virtual std::optional<std::vector<uint8_t>> save_state() const { return std::nullopt; }
  // Puts what save_state() wrote back into a device built from the same configuration, before
  // the transport activates it again. `queues` are the restored queues: a device that held a
  // popped chain gives it back (Queue::undo_pop) so it is handed out again. Throws kiln::Error
  // naming the problem, the device then as it was.
  virtual void restore_state(std::span<const uint8_t> /*state*/, std::span<Queue> /*queues*/) {
    throw kiln::Error("this device cannot be restored from a snapshot");
  }

  // Host-side work (a TAP, sockets, a rate-limit timer). A device with host fds returns one
  // pollable fd - typically its own epoll instance over all of them, so it can add and drop
  // sources and interest (e.g. stop reading a TAP while the guest has no RX buffers) without
  // the VMM knowing. -1: none. The fd must live as long as the device. It is watched
  // level-triggered, and only while the device is live (the transport's gate: DRIVER_OK, not
  // DEVICE_NEEDS_RESET, not paused), so a ready fd of a failed or paused device waits unread.
  // While live it must not stay ready when the device cannot act (e.g. no receive buffers):
  // arm sources in activate(), drop them when stuck and in reset().
  virtual int host_event_fd() const { return -1; }
  // Event-loop thread, only while the device is active, with queue processing excluded: the
  // host fd is ready. Same contract as process_queue; the transport then interrupts the guest
  // for every queue whose used ring moved.
  virtual std::string process_host_events(std::span<Queue> /*queues*/, const GuestMemory& /*mem*/) {
    return "";
  }
};

}  // namespace kiln::virtio
