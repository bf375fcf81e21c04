#include "devices/virtio/queue.h"

#include "base/error.h"

#include <fmt/format.h>

#include <atomic>
#include <cstring>

namespace kiln::virtio {

namespace {

// Split-ring layout: flags, idx, ring[size], then avail's used_event / used's avail_event.
constexpr size_t kRingIdxOffset = 2;
constexpr size_t kRingArrayOffset = 4;
uint64_t avail_ring_bytes(uint16_t size) {
  return kRingArrayOffset + 2 * uint64_t{size} + 2;
}
uint64_t used_ring_bytes(uint16_t size) {
  return kRingArrayOffset + 8 * uint64_t{size} + 2;
}
// Offsets of ring entry i (i == size: the trailing event field).
size_t avail_entry(uint16_t i) {
  return kRingArrayOffset + 2 * size_t{i};
}
size_t used_entry(uint16_t i) {
  return kRingArrayOffset + 8 * size_t{i};
}

// Copies in and out of guest memory already bounds-checked by a slice: one copy each, so a
// value the guest changes concurrently is read once.
uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void store16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, sizeof(v));
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

void Queue::save(snapshot::ByteWriter& w) const {
  w.u16(size);
  w.u8(ready ? 1 : 0);
  w.u64(desc_table);
  w.u64(avail_ring);
  w.u64(used_ring);
  w.u16(next_avail_);
  w.u16(next_used_);
  w.u16(signalled_used_);
  w.u8(static_cast<uint8_t>((event_idx_ ? 1 : 0) | (indirect_ ? 2 : 0)));
}

Queue Queue::restore(snapshot::ByteReader& r, uint16_t max_size, const GuestMemory& mem,
                     const std::string& what) {
  Queue q;
  q.size = r.u16();
  const uint8_t ready = r.u8();
  q.desc_table = r.u64();
  q.avail_ring = r.u64();
  q.used_ring = r.u64();
  q.next_avail_ = r.u16();
  q.next_used_ = r.u16();
  q.signalled_used_ = r.u16();
  const uint8_t features = r.u8();
  if (ready > 1 || features > 3) throw kiln::Error(what + ": flags the queue never holds");
  q.ready = ready == 1;
  q.event_idx_ = features & 1;
  q.indirect_ = features & 2;
  if (q.size == 0 || q.size > max_size || (q.size & (q.size - 1)) != 0)
    throw kiln::Error(
        fmt::format("{}: size {} is not a power of two up to {}", what, q.size, max_size));
  if (q.ready) {
    if (const std::string error = q.validate(mem); !error.empty())
      throw kiln::Error(what + ": " + error);
  }
  return q;
}

std::optional<uint16_t> Queue::avail_idx(const GuestMemory& mem) const {
  const auto idx = mem.slice(avail_ring + kRingIdxOffset, sizeof(uint16_t));
  if (!idx) return std::nullopt;
  return load16(idx->data());
}

Queue::Pop Queue::pop(const GuestMemory& mem) {
  Pop result;
  pop(mem, result);
  return result;
}

void Queue::pop(const GuestMemory& mem, Pop& result) {
  result.kind = Pop::Kind::kEmpty;
  if (!result.error.empty()) result.error.clear();
  result.chain.head = 0;
  result.chain.buffers.clear();  // keeps its capacity
  result.chain.readable_bytes = result.chain.writable_bytes = 0;
  // One bounds check for the whole available ring (flags, idx, entries, used_event).
  const auto avail = mem.slice(avail_ring, avail_ring_bytes(size));
  if (!avail) {
    result.kind = Pop::Kind::kBrokenRing;
    result.error = "available ring is outside guest memory";
    return;
  }
  const uint16_t idx = load16(avail->data() + kRingIdxOffset);
  const uint16_t pending = static_cast<uint16_t>(idx - next_avail_);
  if (pending == 0) return;
  if (pending > size) {
    result.kind = Pop::Kind::kBrokenRing;
    result.error =
        fmt::format("available index moved by {}, more than the queue size {}", pending, size);
    return;
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // ring entry after index
  const uint16_t head = load16(avail->data() + avail_entry(next_avail_ % size));
  if (head >= size) {
    result.kind = Pop::Kind::kBrokenRing;
    result.error =
        fmt::format("available ring entry names descriptor {}, queue size is {}", head, size);
    return;
  }
  ++next_avail_;
  result.chain.head = head;
  std::string error = walk_chain(mem, head, result.chain);
  if (error.empty()) {
    result.kind = Pop::Kind::kChain;
    return;
  }
  result.kind = add_used(mem, head, 0) ? Pop::Kind::kBadChain : Pop::Kind::kBrokenRing;
  result.error = fmt::format("descriptor chain at head {}: {}", head, error);
  result.chain.buffers.clear();
  result.chain.readable_bytes = result.chain.writable_bytes = 0;
}

std::string Queue::walk_chain(const GuestMemory& mem, uint16_t head, DescriptorChain& chain) const {
  // One bounds check for the descriptor table (and one per indirect table); each descriptor is
  // then copied out once and every field of the copy validated.
  const auto direct = mem.slice(desc_table, Gpa{size} * sizeof(Descriptor));
  if (!direct) return "descriptor table is outside guest memory";
  const uint8_t* table = direct->data();
  uint32_t table_size = size;
  uint32_t index = head;
  uint32_t seen = 0;
  bool indirect = false;
  bool saw_writable = false;
  for (;;) {
    if (index >= table_size)
      return fmt::format("descriptor index {} is outside a table of {}", index, table_size);
    if (++seen > table_size) return "chain is longer than its table (a loop?)";
    Descriptor desc;
    std::memcpy(&desc, table + size_t{index} * sizeof(Descriptor), sizeof(desc));

    if (desc.flags & kDescFIndirect) {
      if (!indirect_) return "indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not negotiated";
      if (indirect) return "indirect descriptor inside an indirect table";
      if (desc.flags & kDescFNext) return "indirect descriptor also has NEXT set";
      if (desc.len == 0 || desc.len % sizeof(Descriptor) != 0)
        return fmt::format("indirect table length {} is not a multiple of 16", desc.len);
      if (desc.len / sizeof(Descriptor) > size)
        return fmt::format("indirect table of {} descriptors exceeds the queue size {}",
                           desc.len / sizeof(Descriptor), size);
      const auto t = mem.slice(desc.addr, desc.len);
      if (!t) return fmt::format("indirect table at {:#x} is outside guest memory", desc.addr);
      table = t->data();
      table_size = desc.len / sizeof(Descriptor);
      index = 0;
      seen = 0;
      indirect = true;
      continue;
    }

    const bool writable = desc.flags & kDescFWrite;
    if (!writable && saw_writable) return "device-readable buffer after a device-writable one";
    uint8_t* host = nullptr;
    if (desc.len) {
      const auto h = mem.slice(desc.addr, desc.len);
      if (!h)
        return fmt::format("buffer [{:#x}, +{:#x}) is outside guest memory", desc.addr, desc.len);
      host = h->data();
      if (writable) mem.mark_dirty(desc.addr, desc.len);  // the device may fill all of it
    }
    saw_writable |= writable;
    (writable ? chain.writable_bytes : chain.readable_bytes) += desc.len;
    if (chain.readable_bytes + chain.writable_bytes > UINT32_MAX)
      return "total chain length overflows 32 bits";
    chain.buffers.push_back({desc.addr, desc.len, writable, host});
    if (!(desc.flags & kDescFNext)) return "";
    index = desc.next;
  }
}

bool Queue::add_used(const GuestMemory& mem, uint16_t head, uint32_t written) {
  const auto used = mem.slice(used_ring, used_ring_bytes(size));
  if (!used) return false;
  const UsedElement elem{head, written};
  std::memcpy(used->data() + used_entry(next_used_ % size), &elem, sizeof(elem));
  ++next_used_;
  std::atomic_thread_fence(std::memory_order_release);  // element before index
  store16(used->data() + kRingIdxOffset, next_used_);
  mem.mark_dirty(used_ring, used_ring_bytes(size));
  return true;
}

bool Queue::needs_interrupt(const GuestMemory& mem) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // used idx before reading event/flags
  const uint16_t old = signalled_used_;
  const uint16_t now = next_used_;
  signalled_used_ = now;
  if (old == now) return false;
  const auto avail = mem.slice(avail_ring, avail_ring_bytes(size));
  if (!avail) return true;
  if (event_idx_) {
    const uint16_t used_event = load16(avail->data() + avail_entry(size));
    return static_cast<uint16_t>(now - used_event - 1) < static_cast<uint16_t>(now - old);
  }
  return !(load16(avail->data()) & kAvailFNoInterrupt);
}

bool Queue::enable_notification(const GuestMemory& mem) {
  if (event_idx_) {
    if (const auto used = mem.slice(used_ring, used_ring_bytes(size))) {
      store16(used->data() + used_entry(size), next_avail_);  // avail_event
      mem.mark_dirty(used_ring, used_ring_bytes(size));
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  const auto idx = avail_idx(mem);
  return idx && *idx != next_avail_;
}

}  // namespace kiln::virtio
