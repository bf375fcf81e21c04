#include "arch/x86_64/layout.h"

namespace kiln::x86 {

std::vector<GuestMemory::Range> ram_ranges(uint64_t memory_bytes) {
  std::vector<GuestMemory::Range> ranges;
  if (memory_bytes <= kMmioHoleStart) {
    ranges.push_back({0, memory_bytes});
  } else {
    ranges.push_back({0, kMmioHoleStart});
    ranges.push_back({kMmioHoleEnd, memory_bytes - kMmioHoleStart});
  }
  return ranges;
}

}  // namespace kiln::x86
