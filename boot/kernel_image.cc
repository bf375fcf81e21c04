#include "boot/kernel_image.h"

#include <algorithm>
#include <span>

namespace kiln::boot {

void write_kernel(const GuestMemory& mem, const KernelImage& image, const ImageFile& file) {
  for (const KernelSegment& seg : image.segments) {
    auto dst = mem.checked_slice(seg.paddr, seg.mem_size, "kernel " + image.path);
    file.read_at(seg.file_offset, dst.first(seg.file_size));
    std::fill(dst.begin() + static_cast<ptrdiff_t>(seg.file_size), dst.end(), 0);
  }
}

}  // namespace kiln::boot
