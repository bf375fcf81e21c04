// A parsed and validated kernel image: where its segments go, ready to be read into guest memory.
#pragma once

#include <asm/bootparam.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "boot/image_file.h"

namespace kiln::boot {

// `file_size` bytes from `file_offset` of the image go to `paddr`; the rest up to `mem_size`
// is zeroed. Validated against the file and guest RAM by the parser.
struct KernelSegment {
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  Gpa paddr = 0;
  uint64_t mem_size = 0;
};

struct KernelImage {
  enum class Format { kElf, kBzImage };
  Format format = Format::kElf;
  std::string path;
  std::vector<KernelSegment> segments;
  Gpa entry = 0;  // 64-bit entry point (guest-physical)
  Gpa end = 0;    // exclusive end of the memory the kernel uses (ELF: highest segment end;
                  // bzImage: load address + max(init_size, protected-mode size))
  // The setup header for boot_params: bzImage: the image's own header (bytes beyond the length
  // the image states are zero); ELF: a minimal synthesized one.
  setup_header header{};
  uint32_t cmdline_max = 0;     // longest command line the kernel accepts, without the NUL
  uint64_t initrd_end_max = 0;  // the initrd must end at or below this (initrd_addr_max + 1)
  bool setup_data_ok = false;   // protocol >= 2.09: hdr.setup_data is honoured
};

// Reads the image's segments from `file` (the one it was parsed from) straight into guest memory
// and zeroes the rest of each. Call only after every validation has passed; throws kiln::Error
// (never expected) if a segment is not in RAM, kiln::UsageError if the file shrank.
void write_kernel(const GuestMemory& mem, const KernelImage& image, const ImageFile& file);

}  // namespace kiln::boot
