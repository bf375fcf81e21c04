// The loop every virtio device runs over a queue, written once: pop the available chains, hand
// each to the device, return it through the used ring, log-and-skip bad chains, and when the
// ring runs dry re-enable notifications (EVENT_IDX avail_event) and look again, so a buffer the
// driver added in between is never left waiting for a kick that will not come. Whether the
// guest gets an interrupt afterwards is Queue::needs_interrupt() (the transport asks it).
#pragma once

#include <cstdint>
#include <string>

#include "base/guest_memory.h"
#include "devices/virtio/queue.h"

namespace kiln::virtio {

// What the device did with the chain drain() handed it.
class DrainStep {
 public:
  enum class Kind { kUsed, kRequeue, kRequeueAndStop, kHold };

  // Done: returned to the used ring with `written` bytes; the drain goes on.
  static DrainStep used(uint32_t written) { return {Kind::kUsed, written}; }
  // Left with the driver (Queue::undo_pop): the next pop returns it again. The drain goes on
  // (e.g. a frame too long for the buffer was dropped, the buffer stays).
  static DrainStep requeue() { return {Kind::kRequeue, 0}; }
  // The same, and the drain ends (the device cannot serve it yet: rate-limited, no frame).
  static DrainStep requeue_and_stop() { return {Kind::kRequeueAndStop, 0}; }
  // Kept by the device, in progress (QueueDrain::held()): the drain ends, and the next drain
  // hands the same chain again before popping a new one.
  static DrainStep hold() { return {Kind::kHold, 0}; }

  Kind kind() const { return kind_; }
  uint32_t written() const { return written_; }

 private:
  DrainStep(Kind kind, uint32_t written) : kind_(kind), written_(written) {}
  Kind kind_;
  uint32_t written_;
};

// How a drain ended.
struct DrainResult {
  std::string error;  // not empty: the queue cannot be trusted (the device needs a reset)
  bool idle = false;  // the ring ran dry, with notifications re-enabled
};

// One per queue a device drains: the reused pop result (no allocation per request) and a held
// chain.
class QueueDrain {
 public:
  bool held() const { return held_; }
  // The driver reset the device: a held chain belongs to the old rings.
  void reset() { held_ = false; }

  struct Always {
    bool operator()() const { return true; }
  };
  struct Nothing {
    void operator()() const {}
  };

  // Drains `queue`: while want() (checked before every pop), pops a chain and calls
  // handle(const DescriptorChain&) -> DrainStep. A bad chain (already returned to the used ring
  // with length 0) goes to on_bad_chain(const std::string& error), and the drain goes on.
  // on_empty() runs each time the ring is seen empty, before notifications are re-enabled.
  template <typename OnBadChain, typename Handle, typename Want = Always,
            typename OnEmpty = Nothing>
  DrainResult drain(Queue& queue, const GuestMemory& mem, OnBadChain&& on_bad_chain,
                    Handle&& handle, Want&& want = {}, OnEmpty&& on_empty = {}) {
    for (;;) {
      if (!want()) return {};
      if (!held_) {
        queue.pop(mem, pop_);
        switch (pop_.kind) {
          case Queue::Pop::Kind::kBrokenRing:
            return {pop_.error};
          case Queue::Pop::Kind::kBadChain:
            on_bad_chain(pop_.error);
            continue;
          case Queue::Pop::Kind::kEmpty:
            on_empty();
            if (queue.enable_notification(mem)) continue;  // buffers came in meanwhile
            return {"", true};
          case Queue::Pop::Kind::kChain:
            break;
        }
      }
      held_ = false;
      const DrainStep step = handle(static_cast<const DescriptorChain&>(pop_.chain));
      switch (step.kind()) {
        case DrainStep::Kind::kUsed:
          if (!queue.add_used(mem, pop_.chain.head, step.written()))
            return {"used ring is outside guest memory"};
          break;
        case DrainStep::Kind::kRequeue:
          queue.undo_pop();
          break;
        case DrainStep::Kind::kRequeueAndStop:
          queue.undo_pop();
          return {};
        case DrainStep::Kind::kHold:
          held_ = true;
          return {};
      }
    }
  }

 private:
  Queue::Pop pop_;
  bool held_ = false;
};

}  // namespace kiln::virtio
