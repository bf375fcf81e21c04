// Reading boot images (kernel, initrd) from the host and describing sizes in error messages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/guest_memory.h"

namespace kiln::boot {

// Reads the whole regular file at `path`. `what` names it in errors ("kernel", "initrd"):
// throws kiln::UsageError "<what> <path>: <strerror>" when it cannot be opened or read.
std::vector<uint8_t> read_image_file(const std::string& what, const std::string& path);

// "300 MiB", "1.5 MiB", "12 KiB", "100 bytes": for messages only.
std::string format_size(uint64_t bytes);

// "[0, 0x4000000) [0x100000000, 0x104000000)": the guest RAM regions, for messages only.
std::string describe_ram(const GuestMemory& mem);

}  // namespace kiln::boot
