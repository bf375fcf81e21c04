// ELF64 vmlinux images: validation and segment layout.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "boot/image_file.h"
#include "boot/kernel_image.h"

namespace kiln::boot {

// True if `file` starts with the ELF magic.
bool is_elf(std::span<const uint8_t> file);

// Validates an ELF64 x86-64 ET_EXEC image against the file size and guest RAM (every PT_LOAD
// segment inside RAM, at or above 1 MiB) and computes the physical entry point. Writes nothing.
// Throws kiln::UsageError "kernel <path>: <reason>".
// Reads only the ELF and program headers from `file`.
KernelImage parse_elf(const GuestMemory& mem, const ImageFile& file);

}  // namespace kiln::boot
