#include "boot/boot_params.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "boot/image_file.h"

namespace kiln::boot {

namespace {

constexpr uint64_t kPage = 0x1000;
constexpr uint64_t kSetupDataMax = x86::kEbdaStart - x86::kSetupDataAddr - sizeof(setup_data);

uint64_t align_up(uint64_t v, uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}
uint64_t align_down(uint64_t v, uint64_t a) {
  return v & ~(a - 1);
}

}  // namespace

std::vector<boot_e820_entry> build_e820(const GuestMemory& mem) {
  std::vector<boot_e820_entry> map;
  auto add = [&](uint64_t start, uint64_t end) {
    if (end > start) map.push_back(boot_e820_entry{start, end - start, kE820Ram});
  };
  const auto& regions = mem.regions();
  for (size_t i = 0; i < regions.size(); ++i) {
    const GuestRegion& r = regions[i];
    if (i == 0) {
      add(r.base, std::min<uint64_t>(r.end(), x86::kEbdaStart));
      add(std::max<uint64_t>(r.base, x86::kHighMemStart), r.end());
    } else {
      add(r.base, r.end());
    }
  }
  if (map.size() > E820_MAX_ENTRIES_ZEROPAGE)
    throw Error(fmt::format("e820 map has {} entries; the zero page holds at most {}", map.size(),
                            E820_MAX_ENTRIES_ZEROPAGE));
  return map;
}

void check_cmdline(const KernelImage& image, const std::string& cmdline) {
  if (cmdline.find('\0') != std::string::npos) throw UsageError("command line contains a NUL byte");
  if (cmdline.size() > image.cmdline_max)
    throw UsageError(fmt::format("command line is {} bytes; this kernel accepts at most {}",
                                 cmdline.size(), image.cmdline_max));
  if (cmdline.size() >= x86::kCmdlineMaxSize)
    throw UsageError(fmt::format("command line is {} bytes; Kiln passes at most {}", cmdline.size(),
                                 x86::kCmdlineMaxSize - 1));
}

Gpa place_initrd(const GuestMemory& mem, const KernelImage& image, const std::string& path,
                 uint64_t size) {
  const GuestRegion& low = mem.regions().front();
  const uint64_t limit = std::min<uint64_t>(image.initrd_end_max, low.end());
  const uint64_t floor = align_up(image.end, kPage);
  if (size == 0 || size > limit || align_down(limit - size, kPage) < floor)
    throw UsageError(fmt::format(
        "initrd {} ({}) does not fit below {:#x} and the top of RAM ({}) "
        "above the kernel, which ends at {:#x}",
        path, format_size(size), image.initrd_end_max - 1, format_size(low.end()), image.end));
  return align_down(limit - size, kPage);
}

void check_rng_seed(std::span<const uint8_t> seed) {
  if (seed.size() > kSetupDataMax)
    throw UsageError(
        fmt::format("RNG seed is {} bytes; at most {} fit", seed.size(), kSetupDataMax));
}

boot_params make_boot_params(const GuestMemory& mem, const KernelImage& image,
                             const BootParamsInputs& in) {
  boot_params bp;
  std::memset(&bp, 0, sizeof(bp));
  bp.hdr = image.header;

  bp.hdr.type_of_loader = kLoaderTypeUndefined;
  // No real-mode heap and no quiet/segment tricks: only "loaded high".
  bp.hdr.loadflags = static_cast<uint8_t>((bp.hdr.loadflags | LOADED_HIGH) &
                                          ~(QUIET_FLAG | KEEP_SEGMENTS | CAN_USE_HEAP));
  bp.hdr.heap_end_ptr = 0;

  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(x86::kCmdlineAddr);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(x86::kCmdlineAddr >> 32);

  if (in.initrd_size != 0) {
    bp.hdr.ramdisk_image = static_cast<uint32_t>(in.initrd_addr);
    bp.ext_ramdisk_image = static_cast<uint32_t>(in.initrd_addr >> 32);
    bp.hdr.ramdisk_size = static_cast<uint32_t>(in.initrd_size);
    bp.ext_ramdisk_size = static_cast<uint32_t>(in.initrd_size >> 32);
  } else {
    bp.hdr.ramdisk_image = 0;
    bp.hdr.ramdisk_size = 0;
  }

  bp.hdr.setup_data = in.setup_data;
  bp.acpi_rsdp_addr = in.acpi_rsdp;

  const auto e820 = build_e820(mem);
  std::copy(e820.begin(), e820.end(), bp.e820_table);
  bp.e820_entries = static_cast<uint8_t>(e820.size());
  return bp;
}

void write_cmdline(const GuestMemory& mem, const std::string& cmdline) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(cmdline.c_str());
  mem.checked_write(x86::kCmdlineAddr, std::span(bytes, cmdline.size() + 1), "command line");
}

void write_rng_seed(const GuestMemory& mem, std::span<const uint8_t> seed) {
  setup_data sd{};
  sd.next = 0;
  sd.type = SETUP_RNG_SEED;
  sd.len = static_cast<uint32_t>(seed.size());
  mem.checked_write_obj(x86::kSetupDataAddr, sd, "RNG seed setup_data");
  mem.checked_write(x86::kSetupDataAddr + sizeof(setup_data), seed, "RNG seed");
}

void write_boot_params(const GuestMemory& mem, const boot_params& params) {
  mem.checked_write_obj(x86::kBootParamsAddr, params, "boot_params");
}

}  // namespace kiln::boot
