#include "vmm/guest_memory.h"

#include <unistd.h>

#include <algorithm>

#include "vmm/error.h"

namespace kiln {

namespace {
std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

GuestMemory::GuestMemory(const std::vector<Range>& ranges) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  Gpa prev_end = 0;
  for (const Range& r : ranges) {
    if (r.size == 0 || r.base % page != 0 || r.size % page != 0)
      throw Error("guest memory range at " + hex(r.base) + " size " + hex(r.size) +
                  " is empty or not page-aligned");
    if (r.base + r.size < r.base) throw Error("guest memory range at " + hex(r.base) + " wraps");
    if (!regions_.empty() && r.base < prev_end)
      throw Error("guest memory ranges overlap or are unsorted at " + hex(r.base));
    regions_.push_back(GuestRegion{r.base, Mapping::anonymous(r.size)});
    prev_end = r.base + r.size;
  }
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
  return true;
}

bool GuestMemory::fill(Gpa gpa, uint8_t value, uint64_t len) const {
  auto s = slice(gpa, len);
  if (!s) return false;
  std::fill(s->begin(), s->end(), value);
  return true;
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
