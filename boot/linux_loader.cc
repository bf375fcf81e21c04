#include "boot/linux_loader.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <optional>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "boot/boot_params.h"
#include "boot/bzimage.h"
#include "boot/elf_loader.h"
#include "boot/image_file.h"

namespace kiln::boot {

namespace {

// The fixed low-memory areas Kiln writes must be RAM; checked before anything is written.
void check_boot_areas(const GuestMemory& mem, uint64_t cmdline_len, uint64_t seed_len) {
  struct Area {
    Gpa addr;
    uint64_t len;
    const char* what;
  };
  const Area areas[] = {
      {x86::kBootParamsAddr, sizeof(boot_params), "boot_params"},
      {x86::kCmdlineAddr, cmdline_len + 1, "command line"},
      {x86::kSetupDataAddr, seed_len ? sizeof(setup_data) + seed_len : 0, "setup_data"},
  };
  for (const Area& a : areas)
    if (!mem.slice(a.addr, a.len))
      throw UsageError(fmt::format("guest RAM {} does not cover the {} at {:#x}", describe_ram(mem),
                                   a.what, a.addr));
}

// The file at `path` as it is now (a missing one stamps as all zero: never current).
FileStamp stamp_of(const std::string& path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) < 0) return {};
  return {static_cast<uint64_t>(st.st_dev),
          static_cast<uint64_t>(st.st_ino),
          static_cast<uint64_t>(st.st_size),
          st.st_mtim.tv_sec,
          st.st_mtim.tv_nsec,
          st.st_ctim.tv_sec,
          st.st_ctim.tv_nsec};
}

}  // namespace

bool PreloadedImage::current(const std::string& kernel, const std::string& initrd) const {
  return kernel == kernel_path && initrd == initrd_path && stamp_of(kernel) == this->kernel &&
         (initrd.empty() || stamp_of(initrd) == this->initrd) && this->kernel.ino != 0;
}

PreloadedImage preload_linux_image(const GuestMemory& mem, const std::string& kernel_path,
                                   const std::string& initrd_path) {
  // Stamped before they are read: a file changed meanwhile is not current at the start.
  PreloadedImage p{kernel_path, initrd_path, stamp_of(kernel_path), stamp_of(initrd_path)};
  const ImageFile kernel("kernel", kernel_path);
  const KernelImage image = parse_kernel(mem, kernel);
  write_kernel(mem, image, kernel);
  if (!initrd_path.empty()) {
    const ImageFile initrd("initrd", initrd_path);
    if (initrd.size() == 0) throw UsageError(fmt::format("initrd {}: file is empty", initrd_path));
    const Gpa addr = place_initrd(mem, image, initrd_path, initrd.size());
    initrd.read_at(0, mem.checked_slice(addr, initrd.size(), "initrd " + initrd_path));
  }
  return p;
}

KernelImage parse_kernel(const GuestMemory& mem, const ImageFile& file) {
  if (mem.regions().empty()) throw Error("cannot load a kernel: the VM has no RAM");
  const std::vector<uint8_t> head = file.read_head(0, kSetupHeaderOffset + sizeof(setup_header));
  if (is_elf(head)) return parse_elf(mem, file);
  if (is_bzimage(head)) return parse_bzimage(mem, file);
  throw UsageError(fmt::format("kernel {}: not an ELF or bzImage (bad magic)", file.path()));
}

LinuxBootInfo load_linux(const GuestMemory& mem, const LinuxBootConfig& cfg) {
  // Validate everything first.
  const ImageFile kernel("kernel", cfg.kernel_path);
  const KernelImage image = parse_kernel(mem, kernel);
  check_cmdline(image, cfg.cmdline);

  std::optional<ImageFile> initrd;
  BootParamsInputs in;
  in.acpi_rsdp = cfg.acpi_rsdp;
  if (!cfg.initrd_path.empty()) {
    initrd.emplace("initrd", cfg.initrd_path);
    if (initrd->size() == 0)
      throw UsageError(fmt::format("initrd {}: file is empty", cfg.initrd_path));
    in.initrd_addr = place_initrd(mem, image, cfg.initrd_path, initrd->size());
    in.initrd_size = initrd->size();
  }

  bool use_seed = !cfg.rng_seed.empty();
  if (use_seed && !image.setup_data_ok) {
    spdlog::warn("kernel {}: boot protocol {:#06x} has no setup_data; not passing the RNG seed",
                 cfg.kernel_path, uint16_t{image.header.version});
    use_seed = false;
  }
  if (use_seed) {
    check_rng_seed(cfg.rng_seed);
    in.setup_data = x86::kSetupDataAddr;
  }
  check_boot_areas(mem, cfg.cmdline.size(), use_seed ? cfg.rng_seed.size() : 0);
  const boot_params params = make_boot_params(mem, image, in);

  // Then write.
  if (!cfg.image_preloaded) {
    write_kernel(mem, image, kernel);
    if (initrd)
      initrd->read_at(
          0, mem.checked_slice(in.initrd_addr, in.initrd_size, "initrd " + cfg.initrd_path));
  }
  write_cmdline(mem, cfg.cmdline);
  if (use_seed) write_rng_seed(mem, cfg.rng_seed);
  write_boot_params(mem, params);

  spdlog::info(
      "kernel {} ({}): entry {:#x}, ends at {:#x}{}", cfg.kernel_path,
      image.format == KernelImage::Format::kElf ? "ELF" : "bzImage", image.entry, image.end,
      !initrd ? std::string()
              : fmt::format("; initrd at {:#x} ({})", in.initrd_addr, format_size(in.initrd_size)));
  return LinuxBootInfo{image.entry, x86::kBootParamsAddr};
}

}  // namespace kiln::boot
