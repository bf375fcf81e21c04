#include "base/guest_memory.h"

#include <unistd.h>

#include <algorithm>

#include "base/error.h"

namespace kiln {

namespace {
std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

namespace {
constexpr uint64_t k2MiB = 2ull << 20;

Mapping map_ram(uint64_t size, HugePages huge_pages) {
  switch (huge_pages) {
    case HugePages::k2M:
      return Mapping::anonymous_huge_2m(size);
    case HugePages::kTransparent: {
      // 2 MiB-aligned, so that every aligned 2 MiB of guest RAM can be one huge page.
      Mapping m = Mapping::anonymous(size, k2MiB);
      if (::madvise(m.data(), m.size(), MADV_HUGEPAGE) != 0)
        throw_errno(
            "huge_pages Transparent: madvise(MADV_HUGEPAGE) on guest RAM (this host kernel has "
            "no transparent huge pages; use huge_pages None)");
      return m;
    }
    case HugePages::kNone:
      break;
  }
  return Mapping::anonymous(size);
}
}  // namespace

template <typename Map>
void GuestMemory::map_ranges(const std::vector<Range>& ranges, uint64_t page, Map map) {
  Gpa prev_end = 0;
  uint64_t offset = 0;
  for (const Range& r : ranges) {
    if (r.size == 0 || r.base % page != 0 || r.size % page != 0)
      throw Error("guest memory range at " + hex(r.base) + " size " + hex(r.size) +
                  " is empty or not aligned to " + hex(page));
    if (r.base + r.size < r.base) throw Error("guest memory range at " + hex(r.base) + " wraps");
    if (!regions_.empty() && r.base < prev_end)
      throw Error("guest memory ranges overlap or are unsorted at " + hex(r.base));
    regions_.push_back(GuestRegion{r.base, map(r, offset)});
    prev_end = r.base + r.size;
    offset += r.size;
  }
}

GuestMemory::GuestMemory(const std::vector<Range>& ranges, HugePages huge_pages) {
  const uint64_t page =
      huge_pages == HugePages::k2M ? k2MiB : static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  map_ranges(ranges, page, [&](const Range& r, uint64_t) { return map_ram(r.size, huge_pages); });
  page_size_ = page;
}

uint64_t GuestMemory::discard(Gpa gpa, uint64_t len) const {
  const GuestRegion* r = find(gpa, len);
  if (!r || len == 0) return 0;
  const uint64_t start = (gpa - r->base + page_size_ - 1) / page_size_ * page_size_;
  const uint64_t end = (gpa - r->base + len) / page_size_ * page_size_;
  if (end <= start) return 0;
  if (::madvise(r->mapping.data() + start, end - start, MADV_DONTNEED) != 0) return 0;
  mark_dirty(r->base + start, end - start);  // their contents changed: a Diff must carry them
  return end - start;
}

GuestMemory GuestMemory::map_private(const std::vector<Range>& ranges, int fd) {
  GuestMemory mem;
  mem.map_ranges(ranges, static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)),
                 [&](const Range& r, uint64_t offset) {
                   return Mapping::of_fd(fd, r.size, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_NORESERVE, static_cast<off_t>(offset));
                 });
  mem.page_size_ = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return mem;
}

const GuestRegion* GuestMemory::find(Gpa gpa, uint64_t len) const {
  for (const GuestRegion& r : regions_) {
    if (gpa < r.base || gpa > r.end()) continue;
    const uint64_t offset = gpa - r.base;
    if (len > r.size() - offset) return nullptr;  // runs past this region (or overflows)
    return &r;
  }
  return nullptr;
}

std::optional<std::span<uint8_t>> GuestMemory::slice(Gpa gpa, uint64_t len) const {
  const GuestRegion* r = find(gpa, len);
  if (!r) return std::nullopt;
  return std::span<uint8_t>(r->mapping.data() + (gpa - r->base), len);
}

bool GuestMemory::read(Gpa gpa, std::span<uint8_t> out) const {
  auto s = slice(gpa, out.size());
  if (!s) return false;
  if (!out.empty()) std::memcpy(out.data(), s->data(), out.size());
  return true;
}

bool GuestMemory::write(Gpa gpa, std::span<const uint8_t> in) const {
  auto s = slice(gpa, in.size());
  if (!s) return false;
  if (!in.empty()) std::memcpy(s->data(), in.data(), in.size());
  mark_dirty(gpa, in.size());
  return true;
}

bool GuestMemory::fill(Gpa gpa, uint8_t value, uint64_t len) const {
  auto s = slice(gpa, len);
  if (!s) return false;
  std::fill(s->begin(), s->end(), value);
  mark_dirty(gpa, len);
  return true;
}

void GuestMemory::enable_dirty_tracking() {
  if (!dirty_.empty()) return;
  for (const GuestRegion& r : regions_) dirty_.emplace_back((r.size() / 4096 + 63) / 64);
}

void GuestMemory::mark_dirty(Gpa gpa, uint64_t len) const {
  if (dirty_.empty() || len == 0) return;
  for (size_t i = 0; i < regions_.size(); ++i) {
    const GuestRegion& r = regions_[i];
    if (gpa < r.base || gpa >= r.end()) continue;
    const uint64_t first = (gpa - r.base) / 4096;
    const uint64_t last = (std::min(gpa + len - 1, r.end() - 1) - r.base) / 4096;  // no overflow:
    for (uint64_t page = first; page <= last; ++page)  // len fits the region (a slice's)
      dirty_[i][page / 64].fetch_or(uint64_t{1} << (page % 64), std::memory_order_relaxed);
    return;
  }
}

std::vector<std::vector<uint64_t>> GuestMemory::take_dirty() const {
  std::vector<std::vector<uint64_t>> out;
  for (auto& bitmap : dirty_) {
    std::vector<uint64_t>& words = out.emplace_back(bitmap.size());
    for (size_t w = 0; w < bitmap.size(); ++w)
      words[w] = bitmap[w].exchange(0, std::memory_order_relaxed);
  }
  return out;
}

std::span<uint8_t> GuestMemory::checked_slice(Gpa gpa, uint64_t len,
                                              const std::string& what) const {
  auto s = slice(gpa, len);
  if (!s)
    throw Error(what + ": guest range [" + hex(gpa) + ", +" + hex(len) +
                ") is not inside guest RAM");
  return *s;
}

void GuestMemory::checked_write(Gpa gpa, std::span<const uint8_t> in,
                                const std::string& what) const {
  auto s = checked_slice(gpa, in.size(), what);
  if (!in.empty()) std::memcpy(s.data(), in.data(), in.size());
}

uint64_t GuestMemory::total_size() const {
  uint64_t total = 0;
  for (const GuestRegion& r : regions_) total += r.size();
  return total;
}

}  // namespace kiln
