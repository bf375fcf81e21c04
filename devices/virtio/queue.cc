#include "devices/virtio/queue.h"

#include <fmt/format.h>

#include <atomic>

namespace kiln::virtio {

namespace {

// Split-ring layout offsets.
constexpr Gpa kRingIdxOffset = 2;
constexpr Gpa kRingArrayOffset = 4;
Gpa avail_entry(Gpa ring, uint16_t i) {
  return ring + kRingArrayOffset + 2 * Gpa{i};
}
Gpa used_entry(Gpa ring, uint16_t i) {
  return ring + kRingArrayOffset + 8 * Gpa{i};
}

}  // namespace

void Queue::reset() {
  *this = Queue{};
}

std::string Queue::validate(const GuestMemory& mem) const {
  if (size == 0 || size > kMaxSize || (size & (size - 1)) != 0)
    return fmt::format("queue size {} is not a power of two up to {}", size, kMaxSize);
  if (desc_table % 16 || avail_ring % 2 || used_ring % 4)
    return fmt::format("misaligned rings (desc {:#x}, avail {:#x}, used {:#x})", desc_table,
                       avail_ring, used_ring);
  if (!mem.slice(desc_table, Gpa{size} * sizeof(Descriptor)))
    return fmt::format("descriptor table at {:#x} is outside guest memory", desc_table);
  if (!mem.slice(avail_ring, 6 + 2 * Gpa{size}))
    return fmt::format("available ring at {:#x} is outside guest memory", avail_ring);
  if (!mem.slice(used_ring, 6 + 8 * Gpa{size}))
    return fmt::format("used ring at {:#x} is outside guest memory", used_ring);
  return "";
}

std::optional<uint16_t> Queue::avail_idx(const GuestMemory& mem) const {
  return mem.read_obj<uint16_t>(avail_ring + kRingIdxOffset);
}

Queue::Pop Queue::pop(const GuestMemory& mem) {
  Pop result;
  pop(mem, result);
  return result;
}

void Queue::pop(const GuestMemory& mem, Pop& result) {
  result.kind = Pop::Kind::kEmpty;
  result.error.clear();
  result.chain.head = 0;
  result.chain.buffers.clear();  // keeps its capacity
  result.chain.readable_bytes = result.chain.writable_bytes = 0;
  const auto idx = avail_idx(mem);
  if (!idx) {
    result.kind = Pop::Kind::kBrokenRing;
    result.error = "available ring is outside guest memory";
    return;
  }
  const uint16_t pending = static_cast<uint16_t>(*idx - next_avail_);
  if (pending == 0) return;
  if (pending > size) {
    result.kind = Pop::Kind::kBrokenRing;
    result.error =
        fmt::format("available index moved by {}, more than the queue size {}", pending, size);
    return;
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // ring entry after index
  const auto head = mem.read_obj<uint16_t>(avail_entry(avail_ring, next_avail_ % size));
  if (!head || *head >= size) {
    result.kind = Pop::Kind::kBrokenRing;
    result.error = fmt::format("available ring entry names descriptor {}, queue size is {}",
                               head.value_or(0xffff), size);
    return;
  }
  ++next_avail_;
  result.chain.head = *head;
  std::string error = walk_chain(mem, *head, result.chain);
  if (error.empty()) {
    result.kind = Pop::Kind::kChain;
    return;
  }
  result.kind = add_used(mem, *head, 0) ? Pop::Kind::kBadChain : Pop::Kind::kBrokenRing;
  result.error = fmt::format("descriptor chain at head {}: {}", *head, error);
  result.chain.buffers.clear();
  result.chain.readable_bytes = result.chain.writable_bytes = 0;
}

std::string Queue::walk_chain(const GuestMemory& mem, uint16_t head, DescriptorChain& chain) const {
  Gpa table = desc_table;
  uint32_t table_size = size;
  uint32_t index = head;
  uint32_t seen = 0;
  bool indirect = false;
  bool saw_writable = false;
  for (;;) {
    if (index >= table_size)
      return fmt::format("descriptor index {} is outside a table of {}", index, table_size);
    if (++seen > table_size) return "chain is longer than its table (a loop?)";
    const auto desc = mem.read_obj<Descriptor>(table + Gpa{index} * sizeof(Descriptor));
    if (!desc) return "descriptor table is outside guest memory";

    if (desc->flags & kDescFIndirect) {
      if (!indirect_) return "indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not negotiated";
      if (indirect) return "indirect descriptor inside an indirect table";
      if (desc->flags & kDescFNext) return "indirect descriptor also has NEXT set";
      if (desc->len == 0 || desc->len % sizeof(Descriptor) != 0)
        return fmt::format("indirect table length {} is not a multiple of 16", desc->len);
      if (desc->len / sizeof(Descriptor) > size)
        return fmt::format("indirect table of {} descriptors exceeds the queue size {}",
                           desc->len / sizeof(Descriptor), size);
      if (!mem.slice(desc->addr, desc->len))
        return fmt::format("indirect table at {:#x} is outside guest memory", desc->addr);
      table = desc->addr;
      table_size = desc->len / sizeof(Descriptor);
      index = 0;
      seen = 0;
      indirect = true;
      continue;
    }

    const bool writable = desc->flags & kDescFWrite;
    if (!writable && saw_writable) return "device-readable buffer after a device-writable one";
    if (desc->len && !mem.slice(desc->addr, desc->len))
      return fmt::format("buffer [{:#x}, +{:#x}) is outside guest memory", desc->addr, desc->len);
    saw_writable |= writable;
    (writable ? chain.writable_bytes : chain.readable_bytes) += desc->len;
    if (chain.readable_bytes + chain.writable_bytes > UINT32_MAX)
      return "total chain length overflows 32 bits";
    chain.buffers.push_back({desc->addr, desc->len, writable});
    if (!(desc->flags & kDescFNext)) return "";
    index = desc->next;
  }
}

bool Queue::add_used(const GuestMemory& mem, uint16_t head, uint32_t written) {
  const UsedElement elem{head, written};
  if (!mem.write_obj(used_entry(used_ring, next_used_ % size), elem)) return false;
  ++next_used_;
  std::atomic_thread_fence(std::memory_order_release);  // element before index
  return mem.write_obj<uint16_t>(used_ring + kRingIdxOffset, next_used_);
}

bool Queue::needs_interrupt(const GuestMemory& mem) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // used idx before reading event/flags
  const uint16_t old = signalled_used_;
  const uint16_t now = next_used_;
  signalled_used_ = now;
  if (old == now) return false;
  if (event_idx_) {
    const auto used_event = mem.read_obj<uint16_t>(avail_entry(avail_ring, size));
    if (!used_event) return true;
    return static_cast<uint16_t>(now - *used_event - 1) < static_cast<uint16_t>(now - old);
  }
  const auto flags = mem.read_obj<uint16_t>(avail_ring);
  return !flags || !(*flags & kAvailFNoInterrupt);
}

bool Queue::enable_notification(const GuestMemory& mem) {
  if (event_idx_) {
    mem.write_obj<uint16_t>(used_entry(used_ring, size), next_avail_);  // avail_event
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  const auto idx = avail_idx(mem);
  return idx && *idx != next_avail_;
}

}  // namespace kiln::virtio
