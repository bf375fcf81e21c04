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
  // The kernel's segments and the initrd are in memory already (preload_linux_image, for these
  // same files): everything is checked as usual, only they are not read again.
  bool image_preloaded = false;
};

// A file as it was when it was read: device, inode, size, modification and change times (the
// change time moves on every write and cannot be set back by the file's owner).
struct FileStamp {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_sec = 0, mtime_nsec = 0, ctime_sec = 0, ctime_nsec = 0;
  bool operator==(const FileStamp&) const = default;
};

// What preload_linux_image() read, to tell at the start whether it is still what the paths
// name.
struct PreloadedImage {
  std::string kernel_path, initrd_path;
  FileStamp kernel, initrd;
  // The paths are these and their files unchanged since they were read.
  bool current(const std::string& kernel_path, const std::string& initrd_path) const;
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

// Reads the kernel's segments and the initrd into `mem` where load_linux puts them, and
// nothing else (the command line and boot_params come with load_linux, image_preloaded set):
// the VMM does this ahead of InstanceStart. Throws as load_linux does.
PreloadedImage preload_linux_image(const GuestMemory& mem, const std::string& kernel_path,
                                   const std::string& initrd_path);

}  // namespace kiln::boot
