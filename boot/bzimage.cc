#include "boot/bzimage.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "boot/image_file.h"

namespace kiln::boot {

namespace {

constexpr size_t kMagicOffset = 0x202;
constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kEntry64Offset = 0x200;  // startup_64 relative to the load address

std::string protocol_name(uint16_t v) {
  return fmt::format("{:#06x} ({}.{:02})", v, v >> 8, v & 0xff);
}

}  // namespace

bool is_bzimage(std::span<const uint8_t> file) {
  return file.size() >= kMagicOffset + 4 && std::memcmp(file.data() + kMagicOffset, "HdrS", 4) == 0;
}

KernelImage parse_bzimage(const GuestMemory& mem, const ImageFile& image_file) {
  const std::string& path = image_file.path();
  auto fail = [&](const std::string& reason) {
    return UsageError(fmt::format("kernel {}: {}", path, reason));
  };
  const uint64_t size = image_file.size();
  const std::vector<uint8_t> file =
      image_file.read_head(0, kSetupHeaderOffset + sizeof(setup_header));
  if (!is_bzimage(file)) throw fail("not a bzImage (no \"HdrS\" magic)");

  // The header runs from 0x1f1 to the end the image states: 0x202 + the jump offset at 0x201.
  const size_t stated_len = kMagicOffset + file[0x201] - kSetupHeaderOffset;
  const size_t header_len = std::min(stated_len, sizeof(setup_header));
  if (header_len < offsetof(setup_header, handover_offset))
    throw fail(
        fmt::format("setup header is only {} bytes, too short for boot protocol 2.12", header_len));
  if (size < kSetupHeaderOffset + header_len)
    throw fail(fmt::format("truncated: setup header needs {} bytes, file has {}",
                           kSetupHeaderOffset + header_len, size));
  setup_header hdr{};
  std::memcpy(&hdr, file.data() + kSetupHeaderOffset, header_len);

  if (hdr.boot_flag != 0xaa55)
    throw fail(fmt::format("bad boot_flag {:#06x} (expected 0xaa55)", uint16_t{hdr.boot_flag}));
  if (hdr.version < kMinBootProtocol)
    throw fail(fmt::format("boot protocol version {} is too old; Kiln needs {} or later",
                           protocol_name(hdr.version), protocol_name(kMinBootProtocol)));
  if (!(hdr.xloadflags & XLF_KERNEL_64))
    throw fail("not a 64-bit kernel (XLF_KERNEL_64 is not set in xloadflags)");

  const uint64_t setup_sects = hdr.setup_sects == 0 ? 4 : hdr.setup_sects;
  const uint64_t pm_offset = (setup_sects + 1) * kSectorSize;
  if (pm_offset >= size)
    throw fail(
        fmt::format("truncated: no protected-mode kernel after {} setup sectors ({} bytes, "
                    "file has {})",
                    setup_sects, pm_offset, size));
  const uint64_t pm_size = size - pm_offset;
  if (uint64_t{hdr.syssize} * 16 > pm_size)
    throw fail(
        fmt::format("truncated: header says the protected-mode kernel is {} bytes, the "
                    "file has {}",
                    uint64_t{hdr.syssize} * 16, pm_size));

  uint64_t load = hdr.code32_start;
  if (hdr.relocatable_kernel) {
    load = hdr.pref_address;
    const uint32_t align = hdr.kernel_alignment;
    if (align == 0 || (align & (align - 1)) != 0)
      throw fail(fmt::format("kernel_alignment {:#x} is not a power of two", align));
    if (load % align != 0)
      throw fail(
          fmt::format("pref_address {:#x} is not aligned to kernel_alignment {:#x}", load, align));
  }
  if (load < x86::kHighMemStart) throw fail(fmt::format("load address {:#x} is below 1 MiB", load));
  const uint64_t span = std::max<uint64_t>(hdr.init_size, pm_size);
  const GuestRegion& low = mem.regions().front();
  if (load < low.base || load > low.end() || span > low.end() - load)
    throw fail(
        fmt::format("needs [{:#x}, {:#x}) ({}) but RAM below 4 GiB ends at {:#x} ({}); "
                    "give the VM more memory",
                    load, load + span, format_size(span), low.end(), format_size(low.size())));

  KernelImage image;
  image.format = KernelImage::Format::kBzImage;
  image.path = path;
  image.segments.push_back({pm_offset, pm_size, load, pm_size});
  image.entry = load + kEntry64Offset;
  image.end = load + span;
  image.header = hdr;
  image.cmdline_max = hdr.version >= 0x0206 ? hdr.cmdline_size : 255;
  image.initrd_end_max = uint64_t{hdr.initrd_addr_max} + 1;
  image.setup_data_ok = hdr.version >= 0x0209;
  return image;
}

}  // namespace kiln::boot
