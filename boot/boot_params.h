// The Linux "zero page" (struct boot_params) and what it points to: e820 map, command line,
// initrd placement and the setup_data chain (RNG seed).
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "boot/kernel_image.h"

namespace kiln::boot {

inline constexpr uint32_t kE820Ram = 1;  // E820_TYPE_RAM
inline constexpr uint8_t kLoaderTypeUndefined = 0xff;

// The guest's e820 map: RAM [0, EBDA), RAM [1 MiB, end of the first region) and each further
// region as RAM. Nothing else is marked. Throws kiln::Error if it would exceed the zero page's
// 128 entries.
std::vector<boot_e820_entry> build_e820(const GuestMemory& mem);

// Throws kiln::UsageError unless `cmdline` (without its NUL) fits the kernel's limit and Kiln's
// command-line area, and contains no NUL byte.
void check_cmdline(const KernelImage& image, const std::string& cmdline);

// The highest 4 KiB-aligned address for an initrd of `size` bytes ending at or below
// min(initrd_addr_max + 1, end of the first RAM region) and starting at or above the kernel's
// (page-aligned) end. Throws kiln::UsageError naming `path` if there is no such address.
Gpa place_initrd(const GuestMemory& mem, const KernelImage& image, const std::string& path,
                 uint64_t size);

// Throws kiln::UsageError if `seed` does not fit in the setup_data area.
void check_rng_seed(std::span<const uint8_t> seed);

struct BootParamsInputs {
  Gpa initrd_addr = 0;  // ignored when initrd_size == 0
  uint64_t initrd_size = 0;
  Gpa setup_data = 0;  // head of the setup_data chain; 0 = none
  Gpa acpi_rsdp = 0;   // boot_params.acpi_rsdp_addr (protocol 2.14+); 0 = none
};

// The zero page: zeroed, the image's setup header, then the loader's fields (type_of_loader,
// loadflags, command line, initrd, setup_data, ACPI RSDP) and the e820 map. Pure: writes nothing.
boot_params make_boot_params(const GuestMemory& mem, const KernelImage& image,
                             const BootParamsInputs& in);

// Writers: call only after validation. Throw kiln::Error if the fixed areas are not RAM.
void write_cmdline(const GuestMemory& mem, const std::string& cmdline);      // at kCmdlineAddr
void write_rng_seed(const GuestMemory& mem, std::span<const uint8_t> seed);  // at kSetupDataAddr
void write_boot_params(const GuestMemory& mem, const boot_params& params);   // at kBootParamsAddr

}  // namespace kiln::boot
