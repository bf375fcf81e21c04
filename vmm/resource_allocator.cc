#include "vmm/resource_allocator.h"

#include <fmt/format.h>

#include "base/error.h"

namespace kiln {

std::string MmioSlot::kernel_parameter() const {
  return size % 1024 == 0 ? fmt::format("virtio_mmio.device={}K@{:#x}:{}", size / 1024, base, irq)
                          : fmt::format("virtio_mmio.device={:#x}@{:#x}:{}", size, base, irq);
}

MmioSlot ResourceAllocator::allocate_mmio(uint64_t size) {
  if (next_irq_ > last_irq_ || size > mmio_end_ - next_mmio_)
    throw UsageError(
        fmt::format("too many devices: at most {} can be attached", last_irq_ + 1 - first_irq_));
  MmioSlot slot{next_mmio_, size, next_irq_};
  next_mmio_ += size;
  ++next_irq_;
  return slot;
}

std::string append_kernel_parameters(const std::string& cmdline, const std::string& extra) {
  if (extra.empty()) return cmdline;
  const size_t init_args = cmdline.rfind("--", 0) == 0 ? 0 : cmdline.find(" -- ");
  if (init_args == std::string::npos) return cmdline.empty() ? extra : cmdline + " " + extra;
  std::string head = cmdline.substr(0, init_args);
  return (head.empty() ? extra : head + " " + extra) + (init_args == 0 ? " " : "") +
         cmdline.substr(init_args);
}

}  // namespace kiln
