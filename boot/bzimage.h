// bzImage (Linux x86 boot protocol >= 2.12, 64-bit entry) images: validation and layout.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "boot/image_file.h"
#include "boot/kernel_image.h"

namespace kiln::boot {

inline constexpr size_t kSetupHeaderOffset = 0x1f1;   // struct setup_header in the image
inline constexpr uint16_t kMinBootProtocol = 0x020c;  // 2.12: xloadflags, 64-bit entry

// True if `file` carries the "HdrS" setup-header magic at 0x202.
bool is_bzimage(std::span<const uint8_t> file);

// Validates the setup header (boot_flag, protocol >= 2.12, XLF_KERNEL_64), the file size, the
// load address (pref_address if relocatable, else code32_start; >= 1 MiB) and that
// [load, load + max(init_size, payload)) lies in the first RAM region. Writes nothing.
// Throws kiln::UsageError "kernel <path>: <reason>".
// Reads only the setup header from `file`.
KernelImage parse_bzimage(const GuestMemory& mem, const ImageFile& file);

}  // namespace kiln::boot
