// GuestMemory: the one accessor for guest-physical memory.
//
// Every read or write of guest RAM by Kiln (boot loader, devices, virtqueues) goes through this
// class. Each access is bounds-checked against the RAM regions: an access that is not wholly
// inside one region, or whose end overflows, fails (nullopt / false, or kiln::Error from the
// `checked_*` variants) and never touches host memory outside guest RAM.
//
// The guest can change its memory at any time, concurrently with us: callers copy values out
// (read_obj) before validating them, never validate in place and then re-read.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/huge_pages.h"
#include "base/mapping.h"

namespace kiln {

using Gpa = uint64_t;  // guest-physical address

struct GuestRegion {
  Gpa base = 0;
  Mapping mapping;
  uint64_t size() const { return mapping.size(); }
  Gpa end() const { return base + mapping.size(); }  // exclusive
};

class GuestMemory {
 public:
  struct Range {
    Gpa base;
    uint64_t size;
  };
  // Maps anonymous RAM for each range, backed as `huge_pages` says. Ranges must be
  // page-aligned (2 MiB-aligned with 2M huge pages), non-empty, sorted and non-overlapping; throws
  // kiln::Error otherwise or when the memory cannot be mapped.
  explicit GuestMemory(const std::vector<Range>& ranges, HugePages huge_pages = HugePages::kNone);
  // Maps the ranges from `fd` (a snapshot's memory file: the ranges' bytes one after another)
  // copy-on-write (MAP_PRIVATE): pages load when the guest touches them and its writes never
  // reach the file. The caller checks the file's size first.
  static GuestMemory map_private(const std::vector<Range>& ranges, int fd);

  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  // Host view of [gpa, gpa+len) if it lies inside one region; nullopt otherwise.
  // len == 0 is valid anywhere inside or at the end of a region.
  std::optional<std::span<uint8_t>> slice(Gpa gpa, uint64_t len) const;

  bool read(Gpa gpa, std::span<uint8_t> out) const;
  bool write(Gpa gpa, std::span<const uint8_t> in) const;
  bool fill(Gpa gpa, uint8_t value, uint64_t len) const;

  template <typename T>
  std::optional<T> read_obj(Gpa gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    if (!read(gpa, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T)))) return std::nullopt;
    return value;
  }
  template <typename T>
  bool write_obj(Gpa gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

  // Throwing variants for VMM-side setup (loaders): the message names `what` and the range.
  std::span<uint8_t> checked_slice(Gpa gpa, uint64_t len, const std::string& what) const;
  void checked_write(Gpa gpa, std::span<const uint8_t> in, const std::string& what) const;
  template <typename T>
  void checked_write_obj(Gpa gpa, const T& value, const std::string& what) const {
    static_assert(std::is_trivially_copyable_v<T>);
    checked_write(gpa, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)), what);
  }

  // Pages Kiln itself writes, for Diff snapshots (KVM's dirty log sees only the guest's): with
  // tracking on, write() and fill() mark theirs, and the virtqueues mark the buffers they hand
  // devices to fill and the rings they write. Any thread.
  void enable_dirty_tracking();
  // Marks the pages of [gpa, gpa + len) (no-op without tracking, or outside RAM).
  void mark_dirty(Gpa gpa, uint64_t len) const;
  // One bitmap per region (bit i: page i of 4 KiB) of the pages marked since the last call.
  std::vector<std::vector<uint64_t>> take_dirty() const;

  // Gives the host back the memory of the whole pages inside [gpa, gpa + len) (the balloon):
  // madvise(MADV_DONTNEED), so anonymous RAM reads as zeros again and a snapshot's copy-on-write
  // RAM as the file. Pages are the backing's (2 MiB with 2M huge pages: only whole ones inside
  // the range go). With dirty tracking on, they are marked (KVM's dirty log does not see it).
  // Returns the bytes released (0 outside RAM or for a range with no whole page).
  uint64_t discard(Gpa gpa, uint64_t len) const;

  const std::vector<GuestRegion>& regions() const { return regions_; }
  uint64_t total_size() const;
  uint64_t page_size() const { return page_size_; }

 private:
  GuestMemory() = default;
  // Checks the ranges (see the constructor) and maps each with `map(range, offset)`, its
  // offset the bytes of the ranges before it.
  template <typename Map>
  void map_ranges(const std::vector<Range>& ranges, uint64_t page, Map map);
  const GuestRegion* find(Gpa gpa, uint64_t len) const;
  std::vector<GuestRegion> regions_;
  uint64_t page_size_ = 4096;
  mutable std::vector<std::vector<std::atomic<uint64_t>>> dirty_;  // per region; empty: off
};

}  // namespace kiln
