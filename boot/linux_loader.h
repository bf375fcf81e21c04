// Direct Linux boot: loads an ELF vmlinux or a bzImage, an initrd and a command line into guest
// memory and builds the zero page for the kernel's 64-bit entry point.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "boot/kernel_image.h"

namespace kiln::boot {

// Fields have default initializers so designated initializers may omit any of them.
struct LinuxBootConfig {
  std::string kernel_path{};
  std::string initrd_path{};  // empty = none
  std::string cmdline{};
  std::vector<uint8_t> rng_seed{};  // bytes for SETUP_RNG_SEED; empty = none
  Gpa acpi_rsdp = 0;                // passed in boot_params.acpi_rsdp_addr; 0 = none
};

struct LinuxBootInfo {
  Gpa entry = 0;        // 64-bit entry RIP
  Gpa boot_params = 0;  // RSI
};

// Validates the kernel in `file` (ELF vmlinux or bzImage, chosen by magic) against guest RAM,
// reading only its headers. Writes nothing. Throws kiln::UsageError "kernel <path>: <reason>".
KernelImage parse_kernel(const GuestMemory& mem, const ImageFile& file);

// Validates everything before writing anything (files readable and regular, format, protocol
// version, fits in RAM, command-line length, initrd fits: sizes come from fstat, so nothing is
// read before it is known to fit), then reads the kernel and initrd straight into guest memory,
// loads the kernel, initrd, command line and
// RNG seed into guest memory and builds boot_params at x86::kBootParamsAddr. Throws
// kiln::UsageError naming the file and the reason.
LinuxBootInfo load_linux(const GuestMemory& mem, const LinuxBootConfig& cfg);

}  // namespace kiln::boot
