// Zero page contents: e820, command line, initrd placement, RNG seed setup_data.
#include <asm/bootparam.h>
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <stdexcept>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "base/guest_memory.h"
#include "base/unique_fd.h"
#include "boot/boot_params.h"
#include "boot/image_file.h"
#include "boot/linux_loader.h"
#include "tests/support/test_files.h"

namespace kiln::boot {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGiB = 1 << 30;

using test::TempFile;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
  return v;
}

// An identity-mapped ELF vmlinux with one PT_LOAD segment [paddr, paddr + memsz).
std::vector<uint8_t> make_elf(uint64_t paddr, uint64_t memsz) {
  const std::vector<uint8_t> text = pattern(0x100, 1);
  const size_t data_off = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
  std::vector<uint8_t> file(data_off + text.size());
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = paddr;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = data_off;
  ph.p_vaddr = paddr;
  ph.p_paddr = paddr;
  ph.p_filesz = text.size();
  ph.p_memsz = memsz;
  std::memcpy(file.data(), &eh, sizeof(eh));
  std::memcpy(file.data() + sizeof(eh), &ph, sizeof(ph));
  std::memcpy(file.data() + data_off, text.data(), text.size());
  return file;
}

std::vector<uint8_t> guest_bytes(const GuestMemory& mem, Gpa gpa, size_t n) {
  std::vector<uint8_t> out(n);
  EXPECT_TRUE(mem.read(gpa, out));
  return out;
}

boot_params read_zero_page(const GuestMemory& mem) {
  const auto bp = mem.read_obj<boot_params>(x86::kBootParamsAddr);
  EXPECT_TRUE(bp);
  return bp.value_or(boot_params{});
}

std::string load_error(const GuestMemory& mem, const LinuxBootConfig& cfg) {
  try {
    load_linux(mem, cfg);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_linux did not throw UsageError";
  return {};
}

void expect_e820(const boot_e820_entry& e, uint64_t addr, uint64_t size) {
  EXPECT_EQ(e.addr, addr);
  EXPECT_EQ(e.size, size);
  EXPECT_EQ(e.type, kE820Ram);
}

class BootParams : public ::testing::Test {
 protected:
  GuestMemory mem_{{{0, 64 * kMiB}}};
  TempFile kernel_{make_elf(0x1000000, 0x200000)};  // [16 MiB, 18 MiB)
};

TEST(BootE820, SixtyFourMiB) {
  GuestMemory mem({{0, 64 * kMiB}});
  const auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 2u);
  expect_e820(map[0], 0, x86::kEbdaStart);
  expect_e820(map[1], x86::kHighMemStart, 64 * kMiB - x86::kHighMemStart);
}

TEST(BootE820, AboveFourGiB) {
  GuestMemory mem(x86::ram_ranges(3 * kGiB + 64 * kMiB));
  const auto map = build_e820(mem);
  ASSERT_EQ(map.size(), 3u);
  expect_e820(map[0], 0, x86::kEbdaStart);
  expect_e820(map[1], x86::kHighMemStart, x86::kMmioHoleStart - x86::kHighMemStart);
  expect_e820(map[2], x86::kMmioHoleEnd, 64 * kMiB);
}

TEST_F(BootParams, E820InZeroPage) {
  load_linux(mem_, {.kernel_path = kernel_.path()});
  const boot_params bp = read_zero_page(mem_);
  ASSERT_EQ(bp.e820_entries, 2);
  expect_e820(bp.e820_table[0], 0, x86::kEbdaStart);
  expect_e820(bp.e820_table[1], x86::kHighMemStart, 64 * kMiB - x86::kHighMemStart);
  EXPECT_EQ(bp.e820_table[2].size, 0u);  // the rest of the table stays zero
  EXPECT_EQ(bp.e820_table[2].type, 0u);
}

TEST_F(BootParams, CommandLine) {
  const std::string cmdline = "console=ttyS0 root=/dev/vda rw";
  ASSERT_TRUE(mem_.fill(x86::kCmdlineAddr, 0xee, 256));
  load_linux(mem_, {.kernel_path = kernel_.path(), .cmdline = cmdline});
  const auto bytes = guest_bytes(mem_, x86::kCmdlineAddr, cmdline.size() + 1);
  EXPECT_EQ(std::string(bytes.begin(), bytes.end() - 1), cmdline);
  EXPECT_EQ(bytes.back(), 0);
  const boot_params bp = read_zero_page(mem_);
  EXPECT_EQ(bp.hdr.cmd_line_ptr, x86::kCmdlineAddr);
  EXPECT_EQ(bp.ext_cmd_line_ptr, 0u);
}

TEST_F(BootParams, EmptyCommandLineIsNulTerminated) {
  ASSERT_TRUE(mem_.fill(x86::kCmdlineAddr, 0xee, 16));
  load_linux(mem_, {.kernel_path = kernel_.path()});
  EXPECT_EQ(guest_bytes(mem_, x86::kCmdlineAddr, 1), std::vector<uint8_t>{0});
}

TEST_F(BootParams, LongestCommandLineAccepted) {
  EXPECT_NO_THROW(
      load_linux(mem_, {.kernel_path = kernel_.path(), .cmdline = std::string(2047, 'x')}));
}

TEST_F(BootParams, CommandLineTooLong) {
  const std::string msg =
      load_error(mem_, {.kernel_path = kernel_.path(), .cmdline = std::string(3000, 'x')});
  EXPECT_NE(msg.find("command line is 3000 bytes; this kernel accepts at most 2047"),
            std::string::npos)
      << msg;
  // Validation failed before anything was written.
  EXPECT_EQ(guest_bytes(mem_, 0x1000000, 0x100), std::vector<uint8_t>(0x100, 0));
  EXPECT_EQ(guest_bytes(mem_, x86::kCmdlineAddr, 16), std::vector<uint8_t>(16, 0));
}

TEST_F(BootParams, CommandLineWithNul) {
  const std::string msg =
      load_error(mem_, {.kernel_path = kernel_.path(), .cmdline = std::string("a\0b", 3)});
  EXPECT_NE(msg.find("NUL"), std::string::npos) << msg;
}

TEST_F(BootParams, InitrdAtTopOfRamPageAligned) {
  const auto data = pattern(3 * 4096 + 123, 9);
  TempFile initrd(data);
  load_linux(mem_, {.kernel_path = kernel_.path(), .initrd_path = initrd.path()});
  const boot_params bp = read_zero_page(mem_);
  const uint64_t addr = bp.hdr.ramdisk_image | uint64_t{bp.ext_ramdisk_image} << 32;
  EXPECT_EQ(addr % 4096, 0u);
  EXPECT_EQ(addr, 64 * kMiB - 4 * 4096);  // highest aligned start that still fits
  EXPECT_LE(addr + data.size(), 64 * kMiB);
  EXPECT_EQ(bp.hdr.ramdisk_size, data.size());
  EXPECT_EQ(bp.ext_ramdisk_size, 0u);
  EXPECT_EQ(guest_bytes(mem_, addr, data.size()), data);
}

TEST(BootInitrd, BelowTwoGiBWithLargeMemory) {
  GuestMemory mem(x86::ram_ranges(3 * kGiB + 64 * kMiB));
  TempFile kernel(make_elf(0x1000000, 0x200000));
  const auto data = pattern(5000, 3);
  TempFile initrd(data);
  load_linux(mem, {.kernel_path = kernel.path(), .initrd_path = initrd.path()});
  const boot_params bp = read_zero_page(mem);
  EXPECT_EQ(bp.hdr.ramdisk_image, 0x80000000u - 8192);
  EXPECT_EQ(bp.ext_ramdisk_image, 0u);
  EXPECT_EQ(guest_bytes(mem, bp.hdr.ramdisk_image, data.size()), data);
  ASSERT_EQ(bp.e820_entries, 3);
  expect_e820(bp.e820_table[2], x86::kMmioHoleEnd, 64 * kMiB);
}

TEST(BootInitrd, TooBig) {
  GuestMemory mem({{0, 16 * kMiB}});
  TempFile kernel(make_elf(0x100000, 0x100000));  // ends at 2 MiB
  TempFile initrd(std::vector<uint8_t>(15 * kMiB, 7));
  const std::string msg =
      load_error(mem, {.kernel_path = kernel.path(), .initrd_path = initrd.path()});
  EXPECT_NE(msg.find("initrd " + initrd.path() + " (15 MiB) does not fit"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("top of RAM (16 MiB)"), std::string::npos) << msg;
  EXPECT_EQ(guest_bytes(mem, 0x100000, 0x100), std::vector<uint8_t>(0x100, 0));
}

TEST(BootInitrd, FitsExactlyAboveKernel) {
  GuestMemory mem({{0, 16 * kMiB}});
  TempFile kernel(make_elf(0x100000, 0x100000));  // ends at 2 MiB
  TempFile initrd(std::vector<uint8_t>(14 * kMiB, 7));
  load_linux(mem, {.kernel_path = kernel.path(), .initrd_path = initrd.path()});
  EXPECT_EQ(read_zero_page(mem).hdr.ramdisk_image, 2 * kMiB);
}

TEST_F(BootParams, MissingInitrd) {
  const std::string msg =
      load_error(mem_, {.kernel_path = kernel_.path(), .initrd_path = "/nonexistent/initrd.img"});
  EXPECT_NE(msg.find("initrd /nonexistent/initrd.img"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
}

TEST_F(BootParams, EmptyInitrd) {
  TempFile initrd(std::string_view{});
  const std::string msg =
      load_error(mem_, {.kernel_path = kernel_.path(), .initrd_path = initrd.path()});
  EXPECT_NE(msg.find(initrd.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
}

TEST_F(BootParams, InitrdIsADirectory) {
  const std::string msg = load_error(mem_, {.kernel_path = kernel_.path(), .initrd_path = "/"});
  EXPECT_NE(msg.find("initrd /"), std::string::npos) << msg;
}

TEST_F(BootParams, NoInitrdNoSetupData) {
  load_linux(mem_, {.kernel_path = kernel_.path()});
  const boot_params bp = read_zero_page(mem_);
  EXPECT_EQ(bp.hdr.ramdisk_image, 0u);
  EXPECT_EQ(bp.hdr.ramdisk_size, 0u);
  EXPECT_EQ(bp.hdr.setup_data, 0u);
  EXPECT_EQ(bp.acpi_rsdp_addr, 0u);
}

TEST_F(BootParams, AcpiRsdpAddress) {
  load_linux(mem_, {.kernel_path = kernel_.path(), .acpi_rsdp = x86::kAcpiRsdpAddr});
  EXPECT_EQ(read_zero_page(mem_).acpi_rsdp_addr, x86::kAcpiRsdpAddr);
}

TEST_F(BootParams, RngSeedSetupData) {
  const auto seed = pattern(32, 0x42);
  load_linux(mem_, {.kernel_path = kernel_.path(), .rng_seed = seed});
  const boot_params bp = read_zero_page(mem_);
  ASSERT_EQ(bp.hdr.setup_data, x86::kSetupDataAddr);
  // setup_data has a flexible array member, so read its fixed fields one by one.
  EXPECT_EQ(mem_.read_obj<uint64_t>(x86::kSetupDataAddr + offsetof(setup_data, next)), 0u);
  EXPECT_EQ(mem_.read_obj<uint32_t>(x86::kSetupDataAddr + offsetof(setup_data, type)),
            uint32_t{SETUP_RNG_SEED});
  EXPECT_EQ(mem_.read_obj<uint32_t>(x86::kSetupDataAddr + offsetof(setup_data, len)), seed.size());
  ASSERT_EQ(sizeof(setup_data), 16u);
  EXPECT_EQ(guest_bytes(mem_, x86::kSetupDataAddr + sizeof(setup_data), seed.size()), seed);
}

TEST_F(BootParams, RngSeedTooBig) {
  const std::string msg = load_error(
      mem_, {.kernel_path = kernel_.path(), .rng_seed = std::vector<uint8_t>(1 << 20, 1)});
  EXPECT_NE(msg.find("RNG seed"), std::string::npos) << msg;
}

TEST(BootSizes, FormatSize) {
  EXPECT_EQ(format_size(300 * kMiB), "300 MiB");
  EXPECT_EQ(format_size(3 * kMiB / 2), "1.5 MiB");
  EXPECT_EQ(format_size(4 * kGiB), "4 GiB");
  EXPECT_EQ(format_size(2048), "2 KiB");
  EXPECT_EQ(format_size(100), "100 bytes");
}

// A /proc/self/status value in KiB. Tests compare rises of VmHWM, not its level, which differs
// between builds (an ASan build holds a large quarantine).
uint64_t status_kib(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return ~uint64_t{0};
  char line[256];
  uint64_t kib = ~uint64_t{0};
  const std::string format = std::string(key) + ": %lu kB";
  while (std::fgets(line, sizeof(line), f))
    if (std::sscanf(line, format.c_str(), &kib) == 1) break;
  std::fclose(f);
  return kib;
}
// Resets the peak RSS (VmHWM) to the current RSS when made; mib() is the rise since then.
class RssGrowth {
 public:
  RssGrowth() {
    FILE* f = std::fopen("/proc/self/clear_refs", "w");
    if (f == nullptr) {
      ADD_FAILURE() << "cannot open /proc/self/clear_refs";
      return;
    }
    std::fputs("5", f);  // 5: reset the peak RSS (VmHWM) to the current RSS
    std::fclose(f);
    start_kib_ = status_kib("VmHWM");
  }
  uint64_t mib() const { return (status_kib("VmHWM") - start_kib_) / 1024; }

 private:
  uint64_t start_kib_ = 0;
};

// A file of `size` bytes that starts with `head` and is a hole after it (no disk used).
class SparseFile {
 public:
  SparseFile(const std::vector<uint8_t>& head, uint64_t size) : file_(head) {
    if (::truncate(file_.path().c_str(), static_cast<off_t>(size)) != 0)
      throw std::runtime_error("truncate " + file_.path());
  }
  const std::string& path() const { return file_.path(); }

 private:
  TempFile file_;
};

// The initrd's size comes from fstat and is checked against RAM before anything is read: a
// sparse 1 GiB initrd for 64 MiB of RAM is refused without reading it into host memory.
TEST_F(BootParams, InitrdBiggerThanRamIsRefusedBeforeReading) {
  SparseFile initrd({1, 2, 3}, kGiB);
  const RssGrowth rss;
  const std::string msg =
      load_error(mem_, {.kernel_path = kernel_.path(), .initrd_path = initrd.path()});
  EXPECT_NE(msg.find("initrd " + initrd.path() + " (1 GiB) does not fit"), std::string::npos)
      << msg;
  EXPECT_LT(rss.mib(), 200u) << "the initrd was read into host memory";
}

// Only the kernel's headers and segments are read, straight into guest memory: a vmlinux with
// a 1 GiB tail (debug sections, say) loads without a host copy of the file.
TEST_F(BootParams, KernelIsReadSegmentBySegment) {
  SparseFile kernel(make_elf(0x1000000, 0x200000), kGiB);
  const RssGrowth rss;
  load_linux(mem_, {.kernel_path = kernel.path()});
  EXPECT_LT(rss.mib(), 200u) << "the whole kernel file was read into host memory";
  EXPECT_EQ(guest_bytes(mem_, 0x1000000, 0x100), pattern(0x100, 1));
  EXPECT_EQ(guest_bytes(mem_, 0x1000100, 0x100), std::vector<uint8_t>(0x100, 0));  // zeroed
}

// A FIFO (or device) as kernel or initrd is refused at once: opening it does not wait for a
// writer, and nothing is read from it.
TEST_F(BootParams, FifoKernelAndInitrdAreRefusedWithoutBlocking) {
  char dir_template[] = "/tmp/kiln-fifo-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string fifo = std::string(dir_template) + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const LinuxBootConfig& cfg :
       {LinuxBootConfig{.kernel_path = fifo},
        LinuxBootConfig{.kernel_path = kernel_.path(), .initrd_path = fifo}}) {
    auto result = std::async(std::launch::async, [&] { return load_error(mem_, cfg); });
    if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      // Unblock the loader (open() waits for a writer) so the test can end, then fail.
      UniqueFd writer(::open(fifo.c_str(), O_WRONLY | O_NONBLOCK));
      result.wait();
      ADD_FAILURE() << "load_linux blocked on the FIFO "
                    << (cfg.initrd_path.empty() ? "kernel" : "initrd");
      continue;
    }
    const std::string msg = result.get();
    EXPECT_NE(msg.find(fifo + ": not a regular file"), std::string::npos) << msg;
  }
  ::unlink(fifo.c_str());
  ::rmdir(dir_template);
}

}  // namespace
}  // namespace kiln::boot
