// Hands out guest resources for devices: a virtio-mmio window and an interrupt line each.
#pragma once

#include <cstdint>
#include <string>

#include "base/guest_memory.h"

namespace kiln {

struct MmioSlot {
  Gpa base;
  uint64_t size;
  uint32_t irq;
  // The kernel parameter that announces this virtio-mmio device: virtio_mmio.device=4K@0x..:N
  std::string kernel_parameter() const;
};

class ResourceAllocator {
 public:
  ResourceAllocator(Gpa mmio_base, Gpa mmio_end, uint32_t first_irq, uint32_t last_irq)
      : next_mmio_(mmio_base),
        mmio_end_(mmio_end),
        first_irq_(first_irq),
        next_irq_(first_irq),
        last_irq_(last_irq) {}
  // Throws kiln::UsageError when windows or interrupt lines run out.
  MmioSlot allocate_mmio(uint64_t size);

 private:
  Gpa next_mmio_;
  Gpa mmio_end_;
  uint32_t first_irq_;
  uint32_t next_irq_;
  uint32_t last_irq_;
};

// Inserts `extra` kernel parameters before any " -- " (which starts init's arguments).
std::string append_kernel_parameters(const std::string& cmdline, const std::string& extra);

}  // namespace kiln
