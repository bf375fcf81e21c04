// A split virtqueue as the device sees it: pops descriptor chains the driver made available and
// returns them through the used ring, with VIRTIO_F_EVENT_IDX notification suppression.
//
// Every ring and descriptor access is bounds-checked through GuestMemory (one slice per ring or
// descriptor table per use, then plain copies inside it). Values are copied out of guest memory
// once, then validated: the guest may rewrite the rings concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "base/snapshot/bytes.h"
#include "devices/virtio/virtio_spec.h"

namespace kiln::virtio {

// One buffer of a chain: guest-physical range, direction, and its host view, resolved and
// bounds-checked once when the chain is popped (guest memory never moves while the VM lives),
// so devices never look the buffer up again. `host` is null for a zero-length buffer.
struct ChainBuffer {
  Gpa addr;
  uint32_t len;
  bool device_writable;
  uint8_t* host = nullptr;
};

// A validated descriptor chain: readable buffers first, then writable ones.
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<ChainBuffer> buffers;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
};

class Queue {
 public:
  static constexpr uint16_t kMaxSize = 256;

  // Driver-programmed configuration (through the transport's registers).
  uint16_t size = kMaxSize;
  bool ready = false;
  Gpa desc_table = 0;
  Gpa avail_ring = 0;
  Gpa used_ring = 0;

  // Result of pop(): a chain, nothing available, a bad chain (that request fails; it has been
  // returned to the used ring with length 0), or a broken ring (the device needs a reset).
  struct Pop {
    enum class Kind { kChain, kEmpty, kBadChain, kBrokenRing } kind = Kind::kEmpty;
    DescriptorChain chain;
    std::string error;
  };

  void reset();
  // Checks size and ring placement once the driver sets ready; returns an error text or "".
  std::string validate(const GuestMemory& mem) const;
  // Negotiated ring features.
  void set_features(bool event_idx, bool indirect) {
    event_idx_ = event_idx;
    indirect_ = indirect;
  }

  Pop pop(const GuestMemory& mem);
  // The same, reusing `result` (and its chain's buffer capacity): no allocation per request.
  void pop(const GuestMemory& mem, Pop& result);
  // Puts the last chain pop() returned back: the next pop() returns it again (a device that
  // cannot serve it yet leaves it with the driver: rate-limited, or an RX buffer with no frame).
  void undo_pop() { --next_avail_; }
  // Returns chain `head` with `written` bytes to the used ring. False if the used ring is not
  // in guest memory (the device must then be reset).
  bool add_used(const GuestMemory& mem, uint16_t head, uint32_t written);
  // Whether the driver wants an interrupt for what was added since the last call.
  bool needs_interrupt(const GuestMemory& mem);
  // With EVENT_IDX: publishes avail_event so the driver kicks for the next buffer, and returns
  // true if more buffers arrived meanwhile (process again before sleeping).
  bool enable_notification(const GuestMemory& mem);

  uint16_t next_avail() const { return next_avail_; }
  uint16_t next_used() const { return next_used_; }

  // Snapshots: the driver-programmed layout, the negotiated ring features and the device's
  // ring positions.
  void save(snapshot::ByteWriter& w) const;
  // What save() wrote; kiln::Error naming `what` for a queue the transport never holds (a size
  // that is not a power of two up to `max_size`, a ready queue whose rings are not in `mem`).
  static Queue restore(snapshot::ByteReader& r, uint16_t max_size, const GuestMemory& mem,
                       const std::string& what);

 private:
  std::optional<uint16_t> avail_idx(const GuestMemory& mem) const;
  // Walks the chain from `head`; on failure returns the reason.
  std::string walk_chain(const GuestMemory& mem, uint16_t head, DescriptorChain& chain) const;

  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;  // used idx when we last decided about an interrupt
  bool event_idx_ = false;
  bool indirect_ = false;
};

}  // namespace kiln::virtio
