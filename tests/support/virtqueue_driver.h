// Host-side virtio driver for tests and benchmarks: plays the guest's part of a split virtqueue
// (descriptor table, available ring, reading the used ring) in a kiln::GuestMemory, and drives a
// virtio-mmio transport through its registers the way a guest driver would.
//
// Header-only so that both tests/ and bench/ can use it without another library.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/virtio_spec.h"

namespace kiln::testsupport {

using virtio::Descriptor;
using virtio::UsedElement;

// One buffer of a chain as the driver describes it.
struct DriverBuffer {
  Gpa addr;
  uint32_t len;
  bool writable;
};

class VirtqueueDriver {
 public:
  // Lays out the rings of a queue of `size` entries at `base` (page-aligned is fine): descriptor
  // table, then the available ring, then the used ring (4-aligned). Data buffers come from a bump
  // allocator over [data_base, data_base + data_size).
  VirtqueueDriver(const GuestMemory& mem, Gpa base, uint16_t size, Gpa data_base,
                  uint64_t data_size)
      : mem_(mem),
        size_(size),
        desc_(base),
        avail_(base + 16 * Gpa{size}),
        used_(align_up(avail_ + 6 + 2 * Gpa{size}, 4)),
        data_base_(data_base),
        data_end_(data_base + data_size),
        next_data_(data_base),
        chains_(size) {
    mem_.fill(desc_, 0, rings_end() - desc_);
    for (uint16_t i = 0; i < size; ++i) free_.push_back(static_cast<uint16_t>(size - 1 - i));
  }

  uint16_t size() const { return size_; }
  Gpa desc_table() const { return desc_; }
  Gpa avail_ring() const { return avail_; }
  Gpa used_ring() const { return used_; }
  Gpa rings_end() const { return used_ + 6 + 8 * Gpa{size_}; }  // exclusive
  const GuestMemory& mem() const { return mem_; }

  // ---- Data buffers ----
  // Bump allocator; throws when the data area is exhausted.
  Gpa alloc(uint64_t len, uint64_t align = 16) {
    const Gpa addr = align_up(next_data_, align);
    if (addr + len > data_end_ || addr + len < addr) throw std::runtime_error("data area full");
    next_data_ = addr + len;
    return addr;
  }
  void reset_allocator() { next_data_ = data_base_; }
  // Allocates a buffer and copies `bytes` into it.
  Gpa alloc_bytes(std::span<const uint8_t> bytes) {
    const Gpa addr = alloc(bytes.size());
    write_or_throw(addr, bytes);
    return addr;
  }
  template <typename T>
  Gpa alloc_obj(const T& value) {
    return alloc_bytes(std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

  // ---- Descriptors ----
  // Raw descriptor write (for malformed chains); does not touch the free list.
  void write_desc(uint16_t index, const Descriptor& d) {
    write_or_throw(desc_ + 16 * Gpa{index}, as_bytes(d));
  }
  Descriptor read_desc(uint16_t index) const {
    return *mem_.read_obj<Descriptor>(desc_ + 16 * Gpa{index});
  }
  // Writes `descs` as an indirect table at a newly allocated address; returns it.
  Gpa write_indirect_table(std::span<const Descriptor> descs) {
    const Gpa table = alloc(descs.size() * sizeof(Descriptor), 16);
    for (size_t i = 0; i < descs.size(); ++i)
      write_or_throw(table + 16 * Gpa{i}, as_bytes(descs[i]));
    return table;
  }
  // Turns buffers into descriptors linked 0 -> 1 -> ... (indices within `first`..).
  static std::vector<Descriptor> link(std::span<const DriverBuffer> bufs, uint16_t first = 0) {
    std::vector<Descriptor> out;
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t flags = bufs[i].writable ? virtio::kDescFWrite : 0;
      if (i + 1 < bufs.size()) flags |= virtio::kDescFNext;
      out.push_back({bufs[i].addr, bufs[i].len, flags,
                     static_cast<uint16_t>(i + 1 < bufs.size() ? first + i + 1 : 0)});
    }
    return out;
  }

  // Takes free descriptors for a direct chain of `bufs` (linked in a scrambled, non-sequential
  // order to exercise `next`); returns the head. Throws when too few descriptors are free.
  uint16_t add_chain(std::span<const DriverBuffer> bufs) {
    if (bufs.empty() || bufs.size() > free_.size()) throw std::runtime_error("no descriptors");
    std::vector<uint16_t> idx;
    for (size_t i = 0; i < bufs.size(); ++i) {
      idx.push_back(free_.back());
      free_.pop_back();
    }
    for (size_t i = 0; i < bufs.size(); ++i) {
      uint16_t flags = bufs[i].writable ? virtio::kDescFWrite : 0;
      uint16_t next = 0;
      if (i + 1 < bufs.size()) {
        flags |= virtio::kDescFNext;
        next = idx[i + 1];
      }
      write_desc(idx[i], {bufs[i].addr, bufs[i].len, flags, next});
    }
    chains_[idx[0]] = idx;
    return idx[0];
  }
  // One descriptor pointing to an indirect table holding `bufs`; returns the head.
  uint16_t add_indirect_chain(std::span<const DriverBuffer> bufs) {
    if (free_.empty()) throw std::runtime_error("no descriptors");
    const Gpa table = write_indirect_table(link(bufs));
    const uint16_t head = free_.back();
    free_.pop_back();
    write_desc(head, {table, static_cast<uint32_t>(16 * bufs.size()), virtio::kDescFIndirect, 0});
    chains_[head] = {head};
    return head;
  }
  size_t free_descriptors() const { return free_.size(); }

  // ---- Available ring ----
  // Puts `head` in the next available slot and publishes it (bumps avail idx).
  void publish(uint16_t head) {
    const uint16_t idx = avail_idx();
    set_avail_entry(static_cast<uint16_t>(idx % size_), head);
    set_avail_idx(static_cast<uint16_t>(idx + 1));
  }
  // Adds the chain and publishes it; returns the head.
  uint16_t submit(std::span<const DriverBuffer> bufs, bool indirect = false) {
    const uint16_t head = indirect ? add_indirect_chain(bufs) : add_chain(bufs);
    publish(head);
    return head;
  }
  uint16_t submit(std::initializer_list<DriverBuffer> bufs, bool indirect = false) {
    return submit(std::span(bufs.begin(), bufs.size()), indirect);
  }
  void set_avail_entry(uint16_t slot, uint16_t head) {
    write_u16(avail_ + 4 + 2 * Gpa{slot}, head);
  }
  uint16_t avail_idx() const { return read_u16(avail_ + 2); }
  void set_avail_idx(uint16_t idx) { write_u16(avail_ + 2, idx); }
  void set_avail_flags(uint16_t flags) { write_u16(avail_, flags); }
  void set_used_event(uint16_t v) { write_u16(avail_ + 4 + 2 * Gpa{size_}, v); }

  // ---- Used ring ----
  uint16_t used_idx() const { return read_u16(used_ + 2); }
  uint16_t used_flags() const { return read_u16(used_); }
  UsedElement used_elem(uint16_t slot) const {
    return *mem_.read_obj<UsedElement>(used_ + 4 + 8 * Gpa{slot});
  }
  uint16_t avail_event() const { return read_u16(used_ + 4 + 8 * Gpa{size_}); }
  // Next used element not yet consumed by this driver; frees its descriptors.
  std::optional<UsedElement> pop_used() {
    if (used_idx() == last_used_) return std::nullopt;
    const UsedElement e = used_elem(static_cast<uint16_t>(last_used_ % size_));
    ++last_used_;
    if (e.id < size_) {
      for (uint16_t i : chains_[e.id]) free_.push_back(i);
      chains_[e.id].clear();
    }
    return e;
  }
  uint16_t last_used() const { return last_used_; }

 private:
  static Gpa align_up(Gpa v, uint64_t a) { return (v + a - 1) / a * a; }
  template <typename T>
  static std::span<const uint8_t> as_bytes(const T& v) {
    return std::span(reinterpret_cast<const uint8_t*>(&v), sizeof(T));
  }
  void write_or_throw(Gpa gpa, std::span<const uint8_t> bytes) const {
    if (!mem_.write(gpa, bytes)) throw std::runtime_error("driver write outside guest memory");
  }
  uint16_t read_u16(Gpa gpa) const { return *mem_.read_obj<uint16_t>(gpa); }
  void write_u16(Gpa gpa, uint16_t v) const { write_or_throw(gpa, as_bytes(v)); }

  const GuestMemory& mem_;
  uint16_t size_;
  Gpa desc_, avail_, used_;
  Gpa data_base_, data_end_, next_data_;
  std::vector<uint16_t> free_;
  std::vector<std::vector<uint16_t>> chains_;  // descriptors of each in-flight head
  uint16_t last_used_ = 0;
};

// virtio-mmio register offsets (virtio 1.x, section 4.2.2).
namespace mmio {
inline constexpr uint64_t kMagic = 0x000;
inline constexpr uint64_t kVersion = 0x004;
inline constexpr uint64_t kDeviceId = 0x008;
inline constexpr uint64_t kVendorId = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010;
inline constexpr uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020;
inline constexpr uint64_t kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030;
inline constexpr uint64_t kQueueNumMax = 0x034;
inline constexpr uint64_t kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044;
inline constexpr uint64_t kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060;
inline constexpr uint64_t kInterruptAck = 0x064;
inline constexpr uint64_t kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080;
inline constexpr uint64_t kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090;
inline constexpr uint64_t kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kConfigGeneration = 0x0fc;
inline constexpr uint64_t kConfig = 0x100;
}  // namespace mmio

// Drives an MmioTransport through its BusDevice read()/write() with 4-byte accesses, as a guest
// driver would.
class MmioDriver {
 public:
  explicit MmioDriver(virtio::MmioTransport& transport) : t_(transport) {}

  uint32_t read32(uint64_t offset) {
    uint32_t v = 0;
    t_.read(offset, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void write32(uint64_t offset, uint32_t v) {
    t_.write(offset, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  }
  uint32_t status() { return read32(mmio::kStatus); }
  void set_status(uint32_t s) { write32(mmio::kStatus, s); }

  uint64_t device_features() {
    write32(mmio::kDeviceFeaturesSel, 0);
    uint64_t f = read32(mmio::kDeviceFeatures);
    write32(mmio::kDeviceFeaturesSel, 1);
    f |= uint64_t{read32(mmio::kDeviceFeatures)} << 32;
    return f;
  }
  void write_driver_features(uint64_t f) {
    write32(mmio::kDriverFeaturesSel, 0);
    write32(mmio::kDriverFeatures, static_cast<uint32_t>(f));
    write32(mmio::kDriverFeaturesSel, 1);
    write32(mmio::kDriverFeatures, static_cast<uint32_t>(f >> 32));
  }
  // Programs queue `index` from `q`'s layout and sets QueueReady.
  void setup_queue(uint32_t index, const VirtqueueDriver& q) {
    write32(mmio::kQueueSel, index);
    write32(mmio::kQueueNum, q.size());
    write_addr(mmio::kQueueDescLow, q.desc_table());
    write_addr(mmio::kQueueDriverLow, q.avail_ring());
    write_addr(mmio::kQueueDeviceLow, q.used_ring());
    write32(mmio::kQueueReady, 1);
  }
  void write_addr(uint64_t low_reg, Gpa addr) {
    write32(low_reg, static_cast<uint32_t>(addr));
    write32(low_reg + 4, static_cast<uint32_t>(addr >> 32));
  }

  // The whole initialization (virtio 1.x, 3.1.1): reset, ACKNOWLEDGE, DRIVER, features (the
  // device's offer masked by `wanted`), FEATURES_OK (checked), queues, DRIVER_OK. Returns the
  // negotiated features; throws if the device refuses them or needs a reset.
  uint64_t init(uint64_t wanted, std::span<const VirtqueueDriver* const> queues) {
    using namespace virtio;
    set_status(0);
    set_status(kStatusAcknowledge);
    set_status(kStatusAcknowledge | kStatusDriver);
    const uint64_t features = device_features() & wanted;
    write_driver_features(features);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    if (!(status() & kStatusFeaturesOk)) throw std::runtime_error("FEATURES_OK refused");
    for (size_t i = 0; i < queues.size(); ++i) setup_queue(static_cast<uint32_t>(i), *queues[i]);
    set_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    const uint32_t s = status();
    if (!(s & kStatusDriverOk) || (s & kStatusDeviceNeedsReset))
      throw std::runtime_error("device not live, status " + std::to_string(s));
    return features;
  }
  uint64_t init(uint64_t wanted, const VirtqueueDriver& queue) {
    const VirtqueueDriver* q[] = {&queue};
    return init(wanted, q);
  }

  // What the event loop does when the queue's ioeventfd fires.
  void kick(size_t index = 0) { t_.process_queue(index); }
  uint32_t ack_interrupts() {
    const uint32_t s = read32(mmio::kInterruptStatus);
    write32(mmio::kInterruptAck, s);
    return s;
  }

  virtio::MmioTransport& transport() { return t_; }

 private:
  virtio::MmioTransport& t_;
};

// A temporary file in $TMPDIR (or /tmp) of `size` bytes, removed on destruction.
class TempFile {
 public:
  explicit TempFile(uint64_t size, const std::string& stem = "kiln-test") {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/" + stem + "-XXXXXX";
    const int fd = ::mkstemp(path_.data());
    if (fd < 0) throw std::runtime_error("mkstemp " + path_);
    const bool ok = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
    ::close(fd);
    if (!ok) throw std::runtime_error("ftruncate " + path_);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }
  std::string name() const { return path_.substr(path_.rfind('/') + 1); }
  // pwrite / pread the whole span at `offset`; throw on failure.
  void write_at(uint64_t offset, std::span<const uint8_t> bytes) const {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    const bool ok =
        fd >= 0 && ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
                       static_cast<ssize_t>(bytes.size());
    if (fd >= 0) ::close(fd);
    if (!ok) throw std::runtime_error("pwrite " + path_);
  }
  std::vector<uint8_t> read_at(uint64_t offset, size_t len) const {
    std::vector<uint8_t> out(len);
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    const bool ok = fd >= 0 && ::pread(fd, out.data(), len, static_cast<off_t>(offset)) ==
                                   static_cast<ssize_t>(len);
    if (fd >= 0) ::close(fd);
    if (!ok) throw std::runtime_error("pread " + path_);
    return out;
  }

 private:
  std::string path_;
};

}  // namespace kiln::testsupport
