#include "boot/kernel_image.h"

#include <algorithm>
#include <span>

namespace kiln::boot {

void write_kernel(const GuestMemory& mem, const KernelImage& image) {
  const std::span<const uint8_t> file(image.file);
  for (const KernelSegment& seg : image.segments) {
    auto dst = mem.checked_slice(seg.paddr, seg.mem_size, "kernel " + image.path);
    const auto src = file.subspan(seg.file_offset, seg.file_size);
    std::copy(src.begin(), src.end(), dst.begin());
    std::fill(dst.begin() + static_cast<ptrdiff_t>(seg.file_size), dst.end(), 0);
  }
}

}  // namespace kiln::boot
