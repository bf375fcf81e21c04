#include "base/bus.h"

#include <fmt/format.h>

#include "base/error.h"

namespace kiln {

void Bus::insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device) {
  if (len == 0 || base + len < base)
    throw Error(fmt::format("{} bus: invalid range {:#x}+{:#x}", name_, base, len));
  std::unique_lock lock(mutex_);
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + len)
    throw Error(
        fmt::format("{} bus: range {:#x}+{:#x} overlaps {:#x}", name_, base, len, next->first));
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.len > base)
      throw Error(
          fmt::format("{} bus: range {:#x}+{:#x} overlaps {:#x}", name_, base, len, prev->first));
  }
  ranges_.emplace(base, Entry{len, std::move(device)});
}

const Bus::Entry* Bus::find(uint64_t addr, uint64_t size, uint64_t* base) const {
  auto it = ranges_.upper_bound(addr);
  if (it == ranges_.begin()) return nullptr;
  --it;
  const uint64_t offset = addr - it->first;
  if (offset >= it->second.len || size > it->second.len - offset) return nullptr;
  *base = it->first;
  return &it->second;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
  std::shared_ptr<BusDevice> device;
  uint64_t base = 0;
  {
    std::shared_lock lock(mutex_);
    const Entry* e = find(addr, data.size(), &base);
    if (!e) return false;
    device = e->device;
  }
  device->read(addr - base, data);
  return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
  std::shared_ptr<BusDevice> device;
  uint64_t base = 0;
  {
    std::shared_lock lock(mutex_);
    const Entry* e = find(addr, data.size(), &base);
    if (!e) return false;
    device = e->device;
  }
  device->write(addr - base, data);
  return true;
}

}  // namespace kiln
