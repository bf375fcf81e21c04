#include "boot/elf_loader.h"

#include <elf.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "boot/image_file.h"

namespace kiln::boot {

namespace {

constexpr uint32_t kElfCmdlineMax = 2047;
constexpr uint64_t kElfInitrdEndMax = 0x80000000;

setup_header minimal_header() {
  setup_header hdr{};
  hdr.boot_flag = 0xaa55;
  hdr.header = 0x53726448;  // "HdrS"
  hdr.version = 0x020f;
  hdr.kernel_alignment = 0x1000000;
  hdr.cmdline_size = kElfCmdlineMax;
  hdr.initrd_addr_max = static_cast<uint32_t>(kElfInitrdEndMax - 1);
  return hdr;
}

// Physical entry for `entry`: translated vaddr -> paddr through the segment whose virtual range
// contains it, or `entry` itself when it already lies in a segment's physical range.
std::optional<Gpa> physical_entry(uint64_t entry, const std::vector<Elf64_Phdr>& loads) {
  for (const Elf64_Phdr& ph : loads)
    if (entry >= ph.p_vaddr && entry - ph.p_vaddr < ph.p_memsz)
      return ph.p_paddr + (entry - ph.p_vaddr);
  for (const Elf64_Phdr& ph : loads)
    if (entry >= ph.p_paddr && entry - ph.p_paddr < ph.p_memsz) return entry;
  return std::nullopt;
}

}  // namespace

bool is_elf(std::span<const uint8_t> file) {
  return file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0;
}

KernelImage parse_elf(const GuestMemory& mem, const ImageFile& file) {
  const std::string& path = file.path();
  auto fail = [&](const std::string& reason) {
    return UsageError(fmt::format("kernel {}: {}", path, reason));
  };
  const uint64_t size = file.size();
  if (size < sizeof(Elf64_Ehdr))
    throw fail(fmt::format("truncated ELF header ({} bytes, need {})", size, sizeof(Elf64_Ehdr)));
  Elf64_Ehdr eh;
  file.read_at(0, std::span(reinterpret_cast<uint8_t*>(&eh), sizeof(eh)));
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) throw fail("not a 64-bit ELF (ELFCLASS64 required)");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) throw fail("not a little-endian ELF");
  if (eh.e_machine != EM_X86_64)
    throw fail(fmt::format("ELF machine {} is not x86-64 (EM_X86_64)", eh.e_machine));
  if (eh.e_type != ET_EXEC)
    throw fail(fmt::format("ELF type {} is not an executable (ET_EXEC)", eh.e_type));
  if (eh.e_phnum == 0) throw fail("ELF has no program headers");
  if (eh.e_phentsize != sizeof(Elf64_Phdr))
    throw fail(
        fmt::format("ELF program header size {} is not {}", eh.e_phentsize, sizeof(Elf64_Phdr)));
  const uint64_t ph_bytes = uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > size || ph_bytes > size - eh.e_phoff)
    throw fail(
        fmt::format("truncated: {} program headers at offset {:#x} run past the end of "
                    "the file ({} bytes)",
                    eh.e_phnum, eh.e_phoff, size));
  const std::vector<uint8_t> phdrs = file.read_head(eh.e_phoff, ph_bytes);

  KernelImage image;
  std::vector<Elf64_Phdr> loads;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, phdrs.data() + i * sizeof(Elf64_Phdr), sizeof(ph));
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_filesz > ph.p_memsz)
      throw fail(fmt::format("segment {}: file size {:#x} exceeds memory size {:#x}", i,
                             ph.p_filesz, ph.p_memsz));
    if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset)
      throw fail(
          fmt::format("truncated: segment {} [{:#x}, +{:#x}) runs past the end of the "
                      "file ({} bytes)",
                      i, ph.p_offset, ph.p_filesz, size));
    if (ph.p_memsz == 0) continue;
    if (ph.p_paddr + ph.p_memsz < ph.p_paddr)
      throw fail(
          fmt::format("segment {} at {:#x} (+{:#x}) wraps around", i, ph.p_paddr, ph.p_memsz));
    if (ph.p_paddr < x86::kHighMemStart)
      throw fail(
          fmt::format("segment {} at {:#x} is below 1 MiB, where Kiln keeps its boot "
                      "structures",
                      i, ph.p_paddr));
    if (!mem.slice(ph.p_paddr, ph.p_memsz))
      throw fail(fmt::format("segment {} [{:#x}, {:#x}) ({}) is outside guest RAM {}", i,
                             ph.p_paddr, ph.p_paddr + ph.p_memsz, format_size(ph.p_memsz),
                             describe_ram(mem)));
    loads.push_back(ph);
    image.segments.push_back({ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz});
    image.end = std::max<Gpa>(image.end, ph.p_paddr + ph.p_memsz);
  }
  if (loads.empty()) throw fail("ELF has no loadable (PT_LOAD) segments");

  const auto entry = physical_entry(eh.e_entry, loads);
  if (!entry)
    throw fail(fmt::format("entry point {:#x} is not inside any loadable segment", eh.e_entry));
  if (*entry >= uint64_t{x86::kIdentityMappedGiB} << 30)
    throw fail(fmt::format("entry point {:#x} is above the {} GiB the boot page tables map", *entry,
                           x86::kIdentityMappedGiB));

  image.format = KernelImage::Format::kElf;
  image.path = path;
  image.entry = *entry;
  image.header = minimal_header();
  image.cmdline_max = kElfCmdlineMax;
  image.initrd_end_max = kElfInitrdEndMax;
  image.setup_data_ok = true;
  return image;
}

}  // namespace kiln::boot
