// ELF vmlinux loading: segments, bss, entry translation and every rejection.
#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "base/guest_memory.h"
#include "boot/boot_params.h"
#include "boot/linux_loader.h"
#include "tests/support/test_files.h"

namespace kiln::boot {
namespace {

constexpr uint64_t kMiB = 1 << 20;

using test::TempFile;

struct Segment {
  uint64_t vaddr;
  uint64_t paddr;
  std::vector<uint8_t> data;
  uint64_t memsz;
};

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// ELF64 x86-64 ET_EXEC: header, program headers, then each segment's data.
std::vector<uint8_t> make_elf(const std::vector<Segment>& segs, uint64_t entry) {
  const size_t ph_off = sizeof(Elf64_Ehdr);
  size_t data_off = ph_off + segs.size() * sizeof(Elf64_Phdr);
  size_t total = data_off;
  for (const Segment& s : segs) total += s.data.size();
  std::vector<uint8_t> file(total);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = entry;
  eh.e_phoff = ph_off;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(segs.size());
  std::memcpy(file.data(), &eh, sizeof(eh));
  for (size_t i = 0; i < segs.size(); ++i) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = PF_R | PF_X;
    ph.p_offset = data_off;
    ph.p_vaddr = segs[i].vaddr;
    ph.p_paddr = segs[i].paddr;
    ph.p_filesz = segs[i].data.size();
    ph.p_memsz = segs[i].memsz;
    ph.p_align = 0x1000;
    std::memcpy(file.data() + ph_off + i * sizeof(Elf64_Phdr), &ph, sizeof(ph));
    std::copy(segs[i].data.begin(), segs[i].data.end(), file.begin() + data_off);
    data_off += segs[i].data.size();
  }
  return file;
}

Elf64_Ehdr& ehdr(std::vector<uint8_t>& file) {
  return *reinterpret_cast<Elf64_Ehdr*>(file.data());
}
Elf64_Phdr& phdr(std::vector<uint8_t>& file, size_t i) {
  return *reinterpret_cast<Elf64_Phdr*>(file.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}

std::vector<uint8_t> guest_bytes(const GuestMemory& mem, Gpa gpa, size_t n) {
  std::vector<uint8_t> out(n);
  EXPECT_TRUE(mem.read(gpa, out));
  return out;
}

// Runs load_linux expecting a UsageError; returns its message.
std::string load_error(const GuestMemory& mem, const LinuxBootConfig& cfg) {
  try {
    load_linux(mem, cfg);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_linux did not throw UsageError";
  return {};
}

std::string elf_error(const std::vector<uint8_t>& file) {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(file);
  const std::string msg = load_error(mem, {.kernel_path = f.path()});
  EXPECT_NE(msg.find(f.path()), std::string::npos) << msg;
  return msg;
}

constexpr uint64_t kVirtBase = 0xffffffff81000000;

TEST(BootElf, SegmentsLandAtPaddrWithZeroedBss) {
  GuestMemory mem({{0, 64 * kMiB}});
  const auto text = pattern(0x3000, 1);
  const auto data = pattern(100, 50);
  ASSERT_TRUE(mem.fill(0x1000000, 0xcc, 0x6000));  // stale bytes where bss goes
  ASSERT_TRUE(mem.fill(0x1200000, 0xcc, 0x1000));
  TempFile f(make_elf(
      {{kVirtBase, 0x1000000, text, 0x5000}, {kVirtBase + 0x200000, 0x1200000, data, 0x800}},
      kVirtBase + 0x10));
  const LinuxBootInfo info = load_linux(mem, {.kernel_path = f.path()});

  EXPECT_EQ(guest_bytes(mem, 0x1000000, text.size()), text);
  EXPECT_EQ(guest_bytes(mem, 0x1000000 + text.size(), 0x2000), std::vector<uint8_t>(0x2000, 0));
  EXPECT_EQ(guest_bytes(mem, 0x1005000, 0x1000), std::vector<uint8_t>(0x1000, 0xcc));
  EXPECT_EQ(guest_bytes(mem, 0x1200000, data.size()), data);
  EXPECT_EQ(guest_bytes(mem, 0x1200000 + data.size(), 0x800 - data.size()),
            std::vector<uint8_t>(0x800 - data.size(), 0));
  EXPECT_EQ(info.entry, 0x1000010u);  // virtual entry translated through segment 0
  EXPECT_EQ(info.boot_params, x86::kBootParamsAddr);
}

// The VMM reads the kernel and initrd ahead of InstanceStart (preload_linux_image); load_linux
// with image_preloaded then writes the rest: the same guest memory as one load_linux. A file
// changed since is no longer current.
TEST(BootElf, PreloadedImageThenTheRestIsOneLoad) {
  const auto text = pattern(0x3000, 3);
  TempFile kernel(make_elf({{kVirtBase, 0x1000000, text, 0x5000}}, kVirtBase + 0x10));
  TempFile initrd(pattern(0x2345, 9));
  const LinuxBootConfig cfg{
      .kernel_path = kernel.path(), .initrd_path = initrd.path(), .cmdline = "console=ttyS0 x=1"};
  GuestMemory whole({{0, 64 * kMiB}}), split({{0, 64 * kMiB}});
  const LinuxBootInfo a = load_linux(whole, cfg);
  const PreloadedImage pre = preload_linux_image(split, kernel.path(), initrd.path());
  EXPECT_EQ(guest_bytes(split, 0x1000000, text.size()), text);
  EXPECT_EQ(guest_bytes(split, x86::kBootParamsAddr, 64), std::vector<uint8_t>(64, 0));
  EXPECT_TRUE(pre.current(kernel.path(), initrd.path()));
  LinuxBootConfig rest = cfg;
  rest.image_preloaded = true;
  const LinuxBootInfo b = load_linux(split, rest);
  EXPECT_EQ(a.entry, b.entry);
  EXPECT_EQ(guest_bytes(split, 0, 64 * kMiB), guest_bytes(whole, 0, 64 * kMiB));
  EXPECT_FALSE(pre.current(kernel.path(), ""));  // other paths
  EXPECT_FALSE(pre.current(initrd.path(), initrd.path()));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  { std::ofstream(initrd.path(), std::ios::app) << "more"; }
  EXPECT_FALSE(pre.current(kernel.path(), initrd.path()));  // the initrd was written since
}

TEST(BootElf, EntryAlreadyPhysical) {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(make_elf({{kVirtBase, 0x1000000, pattern(0x1000, 3), 0x1000}}, 0x1000040));
  EXPECT_EQ(load_linux(mem, {.kernel_path = f.path()}).entry, 0x1000040u);
}

TEST(BootElf, EntryTranslatedThroughSecondSegment) {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(make_elf({{kVirtBase, 0x1000000, pattern(0x1000, 3), 0x1000},
                       {kVirtBase + 0x400000, 0x1400000, pattern(0x1000, 9), 0x2000}},
                      kVirtBase + 0x401800));
  EXPECT_EQ(load_linux(mem, {.kernel_path = f.path()}).entry, 0x1401800u);
}

TEST(BootElf, IdentityMappedSegments) {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(make_elf({{0x200000, 0x200000, pattern(0x1000, 3), 0x1000}}, 0x200000));
  EXPECT_EQ(load_linux(mem, {.kernel_path = f.path()}).entry, 0x200000u);
}

TEST(BootElf, MinimalSetupHeaderInBootParams) {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(make_elf({{kVirtBase, 0x1000000, pattern(0x1000, 3), 0x1000}}, kVirtBase));
  load_linux(mem, {.kernel_path = f.path(), .cmdline = "console=ttyS0"});
  const auto bp = mem.read_obj<boot_params>(x86::kBootParamsAddr);
  ASSERT_TRUE(bp);
  EXPECT_EQ(bp->hdr.boot_flag, 0xaa55);
  EXPECT_EQ(bp->hdr.header, 0x53726448u);
  EXPECT_EQ(bp->hdr.version, 0x020f);
  EXPECT_EQ(bp->hdr.kernel_alignment, 0x1000000u);
  EXPECT_EQ(bp->hdr.cmdline_size, 2047u);
  EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
  EXPECT_EQ(bp->hdr.loadflags, LOADED_HIGH);
  EXPECT_EQ(bp->hdr.cmd_line_ptr, x86::kCmdlineAddr);
  EXPECT_EQ(bp->hdr.ramdisk_image, 0u);
  EXPECT_EQ(bp->hdr.setup_data, 0u);
}

TEST(BootElf, MissingFile) {
  GuestMemory mem({{0, 64 * kMiB}});
  const std::string msg = load_error(mem, {.kernel_path = "/nonexistent/kiln/vmlinux"});
  EXPECT_NE(msg.find("kernel /nonexistent/kiln/vmlinux"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
}

TEST(BootElf, BadMagic) {
  const std::string msg = elf_error(pattern(4096, 0x11));
  EXPECT_NE(msg.find("bad magic"), std::string::npos) << msg;
}

TEST(BootElf, EmptyFileIsBadMagic) {
  const std::string msg = elf_error({});
  EXPECT_NE(msg.find("bad magic"), std::string::npos) << msg;
}

TEST(BootElf, TruncatedElfHeader) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  file.resize(40);
  const std::string msg = elf_error(file);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(BootElf, TruncatedProgramHeaders) {
  auto file = make_elf({{kVirtBase, 0x1000000, {}, 0x100}}, kVirtBase);
  ehdr(file).e_phnum = 3;  // claims two more than the file holds
  const std::string msg = elf_error(file);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("program headers"), std::string::npos) << msg;
}

TEST(BootElf, ProgramHeaderOffsetOverflow) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  ehdr(file).e_phoff = ~uint64_t{0} - 8;
  EXPECT_NE(elf_error(file).find("truncated"), std::string::npos);
}

TEST(BootElf, TruncatedSegmentData) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x1000, 3), 0x1000}}, kVirtBase);
  file.resize(file.size() - 1);
  const std::string msg = elf_error(file);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("segment 0"), std::string::npos) << msg;
}

TEST(BootElf, SegmentOffsetOverflow) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  phdr(file, 0).p_offset = ~uint64_t{0} - 0x10;
  EXPECT_NE(elf_error(file).find("truncated"), std::string::npos);
}

TEST(BootElf, FileSizeLargerThanMemSize) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  phdr(file, 0).p_memsz = 0x80;
  EXPECT_NE(elf_error(file).find("exceeds memory size"), std::string::npos);
}

TEST(BootElf, SegmentOutsideRam) {
  const std::string msg =
      elf_error(make_elf({{kVirtBase, 0x3fff000, pattern(0x100, 3), 0x2000}}, kVirtBase));
  EXPECT_NE(msg.find("outside guest RAM"), std::string::npos) << msg;
}

TEST(BootElf, SegmentWrapsAround) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  phdr(file, 0).p_paddr = ~uint64_t{0} - 0x10;
  EXPECT_NE(elf_error(file).find("wraps"), std::string::npos);
}

TEST(BootElf, SegmentBelowOneMiB) {
  const std::string msg = elf_error(make_elf({{0x8000, 0x8000, pattern(0x100, 3), 0x100}}, 0x8000));
  EXPECT_NE(msg.find("below 1 MiB"), std::string::npos) << msg;
}

TEST(BootElf, WrongMachine) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  ehdr(file).e_machine = EM_386;
  EXPECT_NE(elf_error(file).find("x86-64"), std::string::npos);
}

TEST(BootElf, NotExecutable) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  ehdr(file).e_type = ET_DYN;
  EXPECT_NE(elf_error(file).find("ET_EXEC"), std::string::npos);
}

TEST(BootElf, Not64Bit) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  ehdr(file).e_ident[EI_CLASS] = ELFCLASS32;
  EXPECT_NE(elf_error(file).find("64-bit"), std::string::npos);
}

TEST(BootElf, NoLoadableSegments) {
  auto file = make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, kVirtBase);
  phdr(file, 0).p_type = PT_NOTE;
  EXPECT_NE(elf_error(file).find("PT_LOAD"), std::string::npos);
}

TEST(BootElf, EntryOutsideSegments) {
  const std::string msg =
      elf_error(make_elf({{kVirtBase, 0x1000000, pattern(0x100, 3), 0x100}}, 0x2000000));
  EXPECT_NE(msg.find("entry point"), std::string::npos) << msg;
}

TEST(BootElf, NothingWrittenWhenALaterSegmentIsBad) {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(make_elf({{kVirtBase, 0x1000000, pattern(0x1000, 3), 0x1000},
                       {kVirtBase + 0x200000, 0x8000000, pattern(0x100, 4), 0x100}},
                      kVirtBase));
  EXPECT_THROW(load_linux(mem, {.kernel_path = f.path()}), UsageError);
  EXPECT_EQ(guest_bytes(mem, 0x1000000, 0x1000), std::vector<uint8_t>(0x1000, 0));
  EXPECT_EQ(guest_bytes(mem, x86::kBootParamsAddr, sizeof(boot_params)),
            std::vector<uint8_t>(sizeof(boot_params), 0));
}

}  // namespace
}  // namespace kiln::boot
