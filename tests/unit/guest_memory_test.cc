#include "base/guest_memory.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "arch/x86_64/layout.h"
#include "base/error.h"

namespace kiln {
namespace {

constexpr uint64_t kMiB = 1 << 20;

TEST(GuestMemory, ReadWriteRoundTripInsideRegion) {
  GuestMemory mem({{0, 2 * kMiB}});
  ASSERT_TRUE(mem.write_obj<uint64_t>(0x1000, 0x1122334455667788));
  EXPECT_EQ(mem.read_obj<uint64_t>(0x1000), 0x1122334455667788u);
  EXPECT_EQ(mem.total_size(), 2 * kMiB);
}

TEST(GuestMemory, RejectsAccessPastEndAndOverflow) {
  GuestMemory mem({{0, kMiB}});
  EXPECT_FALSE(mem.read_obj<uint32_t>(kMiB - 2).has_value());  // straddles the end
  EXPECT_FALSE(mem.read_obj<uint8_t>(kMiB).has_value());       // one past the end
  EXPECT_TRUE(mem.read_obj<uint8_t>(kMiB - 1).has_value());
  EXPECT_FALSE(mem.slice(8, UINT64_MAX).has_value());  // gpa + len overflows
  EXPECT_FALSE(mem.slice(UINT64_MAX, 2).has_value());
  EXPECT_TRUE(mem.slice(kMiB, 0).has_value());  // empty slice at the end is fine
  uint8_t buf[4] = {1, 2, 3, 4};
  EXPECT_FALSE(mem.write(kMiB - 3, buf));
  EXPECT_FALSE(mem.fill(kMiB - 1, 0, 2));
}

TEST(GuestMemory, AccessMayNotSpanTwoRegionsOrTheHole) {
  GuestMemory mem({{0, kMiB}, {2 * kMiB, kMiB}});
  EXPECT_FALSE(mem.read_obj<uint8_t>(kMiB + 5).has_value());  // in the gap
  EXPECT_TRUE(mem.read_obj<uint8_t>(2 * kMiB).has_value());
  EXPECT_FALSE(mem.slice(kMiB - 4, 8).has_value());
  ASSERT_TRUE(mem.write_obj<uint32_t>(2 * kMiB + 4, 7));
  EXPECT_EQ(mem.read_obj<uint32_t>(2 * kMiB + 4), 7u);
}

TEST(GuestMemory, CheckedVariantsThrowNamingWhat) {
  GuestMemory mem({{0, kMiB}});
  try {
    mem.checked_slice(kMiB - 1, 16, "initrd");
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("initrd"), std::string::npos) << e.what();
  }
}

TEST(GuestMemory, RejectsBadRanges) {
  EXPECT_THROW(GuestMemory({{0, 100}}), Error);                     // not page-aligned
  EXPECT_THROW(GuestMemory({{0, 0}}), Error);                       // empty
  EXPECT_THROW(GuestMemory({{0, 2 * kMiB}, {kMiB, kMiB}}), Error);  // overlap
}

TEST(GuestMemory, TransparentHugePagesAreAlignedAndAdvised) {
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"))
    GTEST_SKIP() << "this host kernel has no transparent huge pages";
  const uint64_t size = 6 * kMiB + 4096;  // any page multiple: THP needs no 2 MiB size
  GuestMemory mem({{0, size}}, HugePages::kTransparent);
  auto s = mem.slice(0, size);
  ASSERT_TRUE(s);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s->data()) % (2 * kMiB), 0u);
  EXPECT_TRUE(mem.write(size - 1, std::array<uint8_t, 1>{7}));
  // The advice is on the mapping: /proc/self/smaps flags it "hg".
  std::ifstream smaps("/proc/self/smaps");
  std::string line, header;
  bool in_ram = false, advised = false;
  char start[32];
  std::snprintf(start, sizeof(start), "%lx-", reinterpret_cast<unsigned long>(s->data()));
  while (std::getline(smaps, line)) {
    if (line.rfind(start, 0) == 0)
      in_ram = true;
    else if (in_ram && line.rfind("VmFlags:", 0) == 0) {
      advised = line.find(" hg") != std::string::npos;
      break;
    }
  }
  EXPECT_TRUE(in_ram && advised) << "guest RAM at " << start << " not advised MADV_HUGEPAGE";
}

TEST(GuestMemory, TwoMiBPagesNeedTwoMiBRanges) {
  EXPECT_THROW(GuestMemory({{0, 3 * kMiB}}, HugePages::k2M), Error);
  EXPECT_THROW(GuestMemory({{kMiB, 2 * kMiB}}, HugePages::k2M), Error);
}

TEST(X86Layout, RamSplitsAroundTheMmioHole) {
  auto small = x86::ram_ranges(128 * kMiB);
  ASSERT_EQ(small.size(), 1u);
  EXPECT_EQ(small[0].base, 0u);
  EXPECT_EQ(small[0].size, 128 * kMiB);

  auto big = x86::ram_ranges(4096 * kMiB);
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(big[0].size, x86::kMmioHoleStart);
  EXPECT_EQ(big[1].base, x86::kMmioHoleEnd);
  EXPECT_EQ(big[0].size + big[1].size, 4096 * kMiB);
}

TEST(GuestMemory, DiscardZeroesWholePagesAndMarksThemDirty) {
  GuestMemory mem({{0, 2 * kMiB}});
  mem.enable_dirty_tracking();
  ASSERT_TRUE(mem.fill(0, 0xaa, 4 * 4096));
  mem.take_dirty();  // a snapshot took them
  // [0x800, 0x3800): only the whole pages 1 and 2 inside it go.
  EXPECT_EQ(mem.discard(0x800, 0x3000), 2 * 4096u);
  EXPECT_EQ(mem.read_obj<uint8_t>(0x1000), 0u);
  EXPECT_EQ(mem.read_obj<uint8_t>(0x2fff), 0u);
  EXPECT_EQ(mem.read_obj<uint8_t>(0x800), 0xaa);
  EXPECT_EQ(mem.read_obj<uint8_t>(0x3000), 0xaa);
  // A Diff snapshot must carry the zeroed pages: they are marked, the others are not.
  const auto dirty = mem.take_dirty();
  ASSERT_EQ(dirty.size(), 1u);
  EXPECT_EQ(dirty[0][0], 0b0110u);
  EXPECT_EQ(mem.discard(2 * kMiB - 4096, 8192), 0u);  // runs past RAM
  EXPECT_EQ(mem.discard(0x100, 0x100), 0u);           // no whole page
}

}  // namespace
}  // namespace kiln
