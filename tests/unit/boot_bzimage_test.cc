// bzImage loading: setup header checks, load address, entry, header copy and rejections.
#include <asm/bootparam.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "base/guest_memory.h"
#include "boot/bzimage.h"
#include "boot/linux_loader.h"
#include "tests/support/test_files.h"

namespace kiln::boot {
namespace {

constexpr uint64_t kMiB = 1 << 20;

using test::TempFile;

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 13);
  return v;
}

struct BzSpec {
  uint16_t version = 0x020f;
  uint16_t xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
  uint8_t loadflags = LOADED_HIGH | CAN_USE_HEAP | QUIET_FLAG;
  uint8_t setup_sects = 3;
  bool relocatable = true;
  uint64_t pref_address = 0x1000000;
  uint32_t kernel_alignment = 0x200000;
  uint32_t code32_start = 0x100000;
  uint32_t init_size = 0x400000;
  uint32_t cmdline_size = 2048;
  uint32_t initrd_addr_max = 0x7fffffff;
  size_t header_len = sizeof(setup_header);  // as stated by the jump at 0x200
  std::vector<uint8_t> payload = pattern(0x8000, 5);
};

std::vector<uint8_t> make_bzimage(const BzSpec& s) {
  const size_t sects = s.setup_sects ? s.setup_sects : 4;
  const size_t setup_size = (sects + 1) * 512;
  std::vector<uint8_t> file(setup_size + s.payload.size(), 0x5a);  // filler: where the header ends
  setup_header h{};
  h.setup_sects = s.setup_sects;
  h.syssize = static_cast<uint32_t>(s.payload.size() / 16);
  h.vid_mode = 0xffff;
  h.boot_flag = 0xaa55;
  h.jump = static_cast<uint16_t>(0xeb | ((s.header_len + 0x1f1 - 0x202) << 8));
  h.header = 0x53726448;
  h.version = s.version;
  h.kernel_version = 0x1234;
  h.loadflags = s.loadflags;
  h.code32_start = s.code32_start;
  h.heap_end_ptr = 0x9e00;
  h.initrd_addr_max = s.initrd_addr_max;
  h.kernel_alignment = s.kernel_alignment;
  h.relocatable_kernel = s.relocatable;
  h.min_alignment = 21;
  h.xloadflags = s.xloadflags;
  h.cmdline_size = s.cmdline_size;
  h.payload_offset = 0x3a0;
  h.payload_length = 0x7000;
  h.pref_address = s.pref_address;
  h.init_size = s.init_size;
  h.handover_offset = 0x190;
  h.kernel_info_offset = 0x4000;
  std::memcpy(file.data() + kSetupHeaderOffset, &h, s.header_len);
  std::copy(s.payload.begin(), s.payload.end(), file.begin() + setup_size);
  return file;
}

std::vector<uint8_t> guest_bytes(const GuestMemory& mem, Gpa gpa, size_t n) {
  std::vector<uint8_t> out(n);
  EXPECT_TRUE(mem.read(gpa, out));
  return out;
}

std::string bz_error(const std::vector<uint8_t>& file, const std::string& cmdline = "") {
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(file);
  try {
    load_linux(mem, {.kernel_path = f.path(), .cmdline = cmdline});
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    if (cmdline.empty()) {
      EXPECT_NE(msg.find(f.path()), std::string::npos) << msg;
    }
    EXPECT_EQ(guest_bytes(mem, x86::kBootParamsAddr, sizeof(boot_params)),
              std::vector<uint8_t>(sizeof(boot_params), 0))
        << "boot_params written before validation";
    return msg;
  }
  ADD_FAILURE() << "load_linux did not throw UsageError";
  return {};
}

TEST(BootBzImage, RelocatableLoadsAtPrefAddress) {
  GuestMemory mem({{0, 64 * kMiB}});
  const BzSpec spec;
  TempFile f(make_bzimage(spec));
  const LinuxBootInfo info = load_linux(mem, {.kernel_path = f.path()});
  EXPECT_EQ(guest_bytes(mem, 0x1000000, spec.payload.size()), spec.payload);
  EXPECT_EQ(info.entry, 0x1000200u);
  EXPECT_EQ(info.boot_params, x86::kBootParamsAddr);
}

TEST(BootBzImage, NonRelocatableLoadsAtCode32Start) {
  GuestMemory mem({{0, 64 * kMiB}});
  BzSpec spec;
  spec.relocatable = false;
  spec.code32_start = 0x200000;
  spec.pref_address = 0x1000001;  // ignored: not relocatable
  TempFile f(make_bzimage(spec));
  const LinuxBootInfo info = load_linux(mem, {.kernel_path = f.path()});
  EXPECT_EQ(guest_bytes(mem, 0x200000, spec.payload.size()), spec.payload);
  EXPECT_EQ(info.entry, 0x200200u);
  EXPECT_EQ(guest_bytes(mem, 0x1000000, 16), std::vector<uint8_t>(16, 0));
}

TEST(BootBzImage, SetupSectsZeroMeansFour) {
  GuestMemory mem({{0, 64 * kMiB}});
  BzSpec spec;
  spec.setup_sects = 0;
  const auto file = make_bzimage(spec);
  ASSERT_EQ(file.size(), 5 * 512 + spec.payload.size());
  TempFile f(file);
  load_linux(mem, {.kernel_path = f.path()});
  EXPECT_EQ(guest_bytes(mem, 0x1000000, spec.payload.size()), spec.payload);
}

TEST(BootBzImage, HeaderCopiedIntoBootParams) {
  GuestMemory mem({{0, 64 * kMiB}});
  const BzSpec spec;
  TempFile f(make_bzimage(spec));
  load_linux(mem, {.kernel_path = f.path(), .cmdline = "quiet"});
  const auto bp = mem.read_obj<boot_params>(x86::kBootParamsAddr);
  ASSERT_TRUE(bp);
  EXPECT_EQ(bp->hdr.setup_sects, 3);
  EXPECT_EQ(bp->hdr.syssize, spec.payload.size() / 16);
  EXPECT_EQ(bp->hdr.vid_mode, 0xffff);
  EXPECT_EQ(bp->hdr.boot_flag, 0xaa55);
  EXPECT_EQ(bp->hdr.header, 0x53726448u);
  EXPECT_EQ(bp->hdr.version, 0x020f);
  EXPECT_EQ(bp->hdr.kernel_version, 0x1234);
  EXPECT_EQ(bp->hdr.kernel_alignment, 0x200000u);
  EXPECT_EQ(bp->hdr.relocatable_kernel, 1);
  EXPECT_EQ(bp->hdr.min_alignment, 21);
  EXPECT_EQ(bp->hdr.xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
  EXPECT_EQ(bp->hdr.cmdline_size, 2048u);
  EXPECT_EQ(bp->hdr.payload_offset, 0x3a0u);
  EXPECT_EQ(bp->hdr.pref_address, 0x1000000u);
  EXPECT_EQ(bp->hdr.init_size, 0x400000u);
  EXPECT_EQ(bp->hdr.handover_offset, 0x190u);
  EXPECT_EQ(bp->hdr.kernel_info_offset, 0x4000u);
  // The loader's own fields.
  EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
  EXPECT_EQ(bp->hdr.loadflags, LOADED_HIGH);  // QUIET and CAN_USE_HEAP cleared
  EXPECT_EQ(bp->hdr.heap_end_ptr, 0);
  EXPECT_EQ(bp->hdr.cmd_line_ptr, x86::kCmdlineAddr);
  // Nothing outside the header is copied.
  EXPECT_EQ(bp->sentinel, 0);
  EXPECT_EQ(bp->e820_entries, 2);
}

TEST(BootBzImage, OnlyTheStatedHeaderLengthIsCopied) {
  GuestMemory mem({{0, 64 * kMiB}});
  BzSpec spec;
  spec.header_len = offsetof(setup_header, handover_offset);  // a 2.10-sized header
  TempFile f(make_bzimage(spec));
  load_linux(mem, {.kernel_path = f.path()});
  const auto bp = mem.read_obj<boot_params>(x86::kBootParamsAddr);
  ASSERT_TRUE(bp);
  EXPECT_EQ(bp->hdr.init_size, 0x400000u);
  EXPECT_EQ(bp->hdr.handover_offset, 0u);  // file holds 0x5a filler there
  EXPECT_EQ(bp->hdr.kernel_info_offset, 0u);
}

TEST(BootBzImage, HeaderTooShortForProtocol) {
  BzSpec spec;
  spec.header_len = offsetof(setup_header, pref_address);
  EXPECT_NE(bz_error(make_bzimage(spec)).find("too short"), std::string::npos);
}

TEST(BootBzImage, CmdlineLimitFromHeader) {
  BzSpec spec;
  spec.cmdline_size = 100;
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile f(make_bzimage(spec));
  EXPECT_NO_THROW(load_linux(mem, {.kernel_path = f.path(), .cmdline = std::string(100, 'a')}));
  const std::string msg = bz_error(make_bzimage(spec), std::string(101, 'a'));
  EXPECT_NE(msg.find("command line is 101 bytes; this kernel accepts at most 100"),
            std::string::npos)
      << msg;
}

TEST(BootBzImage, BadBootFlag) {
  auto file = make_bzimage({});
  file[0x1fe] = 0;
  const std::string msg = bz_error(file);
  EXPECT_NE(msg.find("boot_flag"), std::string::npos) << msg;
}

TEST(BootBzImage, ProtocolTooOld) {
  BzSpec spec;
  spec.version = 0x020b;
  const std::string msg = bz_error(make_bzimage(spec));
  EXPECT_NE(msg.find("0x020b"), std::string::npos) << msg;
  EXPECT_NE(msg.find("too old"), std::string::npos) << msg;
}

TEST(BootBzImage, ProtocolTwelveAccepted) {
  GuestMemory mem({{0, 64 * kMiB}});
  BzSpec spec;
  spec.version = 0x020c;
  TempFile f(make_bzimage(spec));
  EXPECT_EQ(load_linux(mem, {.kernel_path = f.path()}).entry, 0x1000200u);
}

TEST(BootBzImage, Not64Bit) {
  BzSpec spec;
  spec.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
  const std::string msg = bz_error(make_bzimage(spec));
  EXPECT_NE(msg.find("XLF_KERNEL_64"), std::string::npos) << msg;
}

TEST(BootBzImage, TruncatedPayload) {
  auto file = make_bzimage({});
  file.resize(file.size() - 16);  // syssize now claims more than the file has
  const std::string msg = bz_error(file);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(BootBzImage, TruncatedSetupSectors) {
  auto file = make_bzimage({});
  file.resize(3 * 512);  // header present, setup sectors cut short, no payload
  const std::string msg = bz_error(file);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(BootBzImage, TruncatedHeader) {
  auto file = make_bzimage({});
  file.resize(0x210);  // magic present, rest of the header missing
  const std::string msg = bz_error(file);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(BootBzImage, MisalignedPrefAddress) {
  BzSpec spec;
  spec.pref_address = 0x1100000;
  const std::string msg = bz_error(make_bzimage(spec));
  EXPECT_NE(msg.find("not aligned"), std::string::npos) << msg;
}

TEST(BootBzImage, LoadAddressBelowOneMiB) {
  BzSpec spec;
  spec.relocatable = false;
  spec.code32_start = 0x10000;
  const std::string msg = bz_error(make_bzimage(spec));
  EXPECT_NE(msg.find("below 1 MiB"), std::string::npos) << msg;
}

TEST(BootBzImage, InitSizeDoesNotFitInRam) {
  BzSpec spec;
  spec.init_size = 64 * kMiB;  // 16 MiB + 64 MiB > 64 MiB of RAM
  const std::string msg = bz_error(make_bzimage(spec));
  EXPECT_NE(msg.find("RAM"), std::string::npos) << msg;
}

TEST(BootBzImage, InitrdBelowInitrdAddrMax) {
  GuestMemory mem({{0, 64 * kMiB}});
  BzSpec spec;
  spec.initrd_addr_max = 0x2ffffff;  // initrd must end at or below 48 MiB
  TempFile kernel(make_bzimage(spec));
  const auto initrd_bytes = pattern(0x2345, 77);
  TempFile initrd(initrd_bytes);
  load_linux(mem, {.kernel_path = kernel.path(), .initrd_path = initrd.path()});
  const auto bp = mem.read_obj<boot_params>(x86::kBootParamsAddr);
  ASSERT_TRUE(bp);
  const uint64_t addr = bp->hdr.ramdisk_image;
  EXPECT_EQ(addr, (0x3000000 - initrd_bytes.size()) & ~uint64_t{0xfff});
  EXPECT_EQ(guest_bytes(mem, addr, initrd_bytes.size()), initrd_bytes);
}

TEST(BootBzImage, InitrdMustNotOverlapInitSize) {
  BzSpec spec;
  spec.init_size = 40 * kMiB;  // kernel uses [16 MiB, 56 MiB)
  GuestMemory mem({{0, 64 * kMiB}});
  TempFile kernel(make_bzimage(spec));
  TempFile initrd(std::vector<uint8_t>(8 * kMiB + 1, 1));
  try {
    load_linux(mem, {.kernel_path = kernel.path(), .initrd_path = initrd.path()});
    ADD_FAILURE() << "initrd overlapping the kernel's init_size was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(initrd.path()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::boot
