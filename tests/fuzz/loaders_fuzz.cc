// libFuzzer target for the boot images a user hands Kiln (boot/): arbitrary bytes as the kernel
// (ELF vmlinux or bzImage, chosen by magic as for `kiln run --kernel`) and optionally an initrd
// and a command line, loaded into a 64 MiB guest. An input is: u8 flags (bit 0: the rest after a
// u32 split point is the initrd; bit 1: a command line of the next u8 bytes), then the files.
// Checks: no crash or sanitizer report; a refusal is a kiln::UsageError (with a message); a
// load's entry point and boot_params are inside guest RAM.
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.h"
#include "boot/linux_loader.h"

namespace {

constexpr uint64_t kRam = 64 << 20;

// A memfd holding `bytes`, named by its /proc/self/fd path (a regular file, as ImageFile wants).
struct MemFile {
  int fd = -1;
  std::string path;
  MemFile(const uint8_t* p, size_t n) {
    fd = ::memfd_create("kiln-fuzz", MFD_CLOEXEC);
    if (fd < 0 || (n && ::write(fd, p, n) != static_cast<ssize_t>(n))) std::abort();
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  ~MemFile() { ::close(fd); }
};

kiln::GuestMemory& ram() {
  static kiln::GuestMemory mem = [] {
    spdlog::set_level(spdlog::level::off);
    return kiln::GuestMemory({{0, kRam}});
  }();
  return mem;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  size_t at = 1;
  size_t kernel_len = size - at;
  size_t initrd_len = 0;
  if ((flags & 1) && size >= at + 4) {
    uint32_t split = 0;
    std::memcpy(&split, data + at, 4);
    at += 4;
    kernel_len = std::min<size_t>(split, size - at);
    initrd_len = size - at - kernel_len;
  }
  std::string cmdline;
  if ((flags & 2) && at + kernel_len < size) {
    // taken from the initrd's bytes
    const size_t n = std::min<size_t>(data[at + kernel_len], initrd_len);
    cmdline.assign(reinterpret_cast<const char*>(data + size - n), n);
    initrd_len -= n;
  }
  MemFile kernel(data + at, kernel_len);
  MemFile initrd(data + at + kernel_len, initrd_len);
  kiln::boot::LinuxBootConfig cfg;
  cfg.kernel_path = kernel.path;
  if (flags & 1) cfg.initrd_path = initrd.path;
  cfg.cmdline = cmdline;
  try {
    const kiln::boot::LinuxBootInfo info = kiln::boot::load_linux(ram(), cfg);
    if (info.entry >= kRam || info.boot_params >= kRam) std::abort();
  } catch (const kiln::UsageError& e) {
    if (std::strlen(e.what()) == 0) std::abort();
  }
  return 0;
}
