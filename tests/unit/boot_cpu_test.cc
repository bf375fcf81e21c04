#include "arch/x86_64/boot_cpu.h"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/x86_64/layout.h"

namespace kiln::x86 {
namespace {

TEST(BootCpu, GdtEntriesMatchTheLinuxBootSegments) {
  // The canonical encodings of a flat 64-bit code, flat data and busy-TSS descriptor.
  for (const SegmentDescriptor& seg : boot_segments()) {
    switch (seg.selector) {
      case kBootCodeSelector:
        EXPECT_EQ(seg.to_gdt_entry(), 0x00af9b000000ffffull);
        break;
      case kBootDataSelector:
        EXPECT_EQ(seg.to_gdt_entry(), 0x00cf93000000ffffull);
        break;
      case kBootTssSelector:
        EXPECT_EQ(seg.to_gdt_entry(), 0x008f8b000000ffffull);
        break;
      default:
        ADD_FAILURE() << "unexpected selector " << seg.selector;
    }
  }
  const kvm_segment cs = boot_segments()[0].to_kvm();
  EXPECT_EQ(cs.l, 1);
  EXPECT_EQ(cs.db, 0);
  EXPECT_EQ(cs.selector, 0x10);
}

TEST(BootCpu, IdentityPageTablesCoverFourGiB) {
  GuestMemory mem({{0, 16 << 20}});
  write_boot_tables(mem);
  const uint64_t pml4 = *mem.read_obj<uint64_t>(kPml4Addr);
  EXPECT_EQ(pml4 & ~0xfffull, kPdptAddr);
  EXPECT_EQ(pml4 & 1, 1u);
  // Walk some addresses: PML4[0] -> PDPT[gib] -> PD[..] with 2 MiB pages.
  for (uint64_t addr : {0ull, 0x1234567ull, 0x7fe00000ull, 0xfee00000ull, 0xffffffffull}) {
    const uint64_t pdpte = *mem.read_obj<uint64_t>(kPdptAddr + ((addr >> 30) & 511) * 8);
    ASSERT_EQ(pdpte & 1, 1u);
    const uint64_t pde = *mem.read_obj<uint64_t>((pdpte & ~0xfffull) + ((addr >> 21) & 511) * 8);
    ASSERT_EQ(pde & 0x83, 0x83u) << std::hex << addr;  // present, writable, 2 MiB
    EXPECT_EQ((pde & ~0x1fffffull) | (addr & 0x1fffff), addr);
  }
  const uint64_t gdt_code = *mem.read_obj<uint64_t>(kGdtAddr + kBootCodeSelector);
  EXPECT_EQ(gdt_code, 0x00af9b000000ffffull);
}

TEST(BootCpu, CpuidCarriesApicIdAndTopology) {
  std::vector<kvm_cpuid_entry2> supported(4);
  supported[0].function = 1;
  supported[0].ebx = 0xff00ffff;
  supported[1].function = 0xb;
  supported[1].index = 0;
  supported[2].function = 0xb;
  supported[2].index = 1;
  supported[3].function = 0;
  supported[3].eax = 0x1f;
  auto cpuid = vcpu_cpuid(supported, 3, 4);
  EXPECT_EQ(cpuid[0].ebx >> 24, 3u);
  EXPECT_EQ((cpuid[0].ebx >> 16) & 0xff, 4u);
  EXPECT_NE(cpuid[0].ecx & (1u << 31), 0u);  // hypervisor bit
  EXPECT_EQ(cpuid[1].edx, 3u);
  EXPECT_EQ(cpuid[2].edx, 3u);
  EXPECT_EQ(cpuid[2].ebx, 4u);     // four cores at the core level
  EXPECT_EQ(cpuid[2].eax, 2u);     // two bits of APIC id for four cores
  EXPECT_EQ(cpuid[3].eax, 0x1fu);  // other leaves untouched
}

TEST(BootCpu, LapicLintsAreExtIntAndNmi) {
  kvm_lapic_state lapic{};
  uint32_t masked = 0x10000;
  std::memcpy(lapic.regs + 0x350, &masked, 4);
  configure_lapic_lints(lapic);
  uint32_t lint0, lint1;
  std::memcpy(&lint0, lapic.regs + 0x350, 4);
  std::memcpy(&lint1, lapic.regs + 0x360, 4);
  EXPECT_EQ(lint0, 0x10700u);  // ExtINT, other bits kept
  EXPECT_EQ(lint1, 0x400u);    // NMI
}

TEST(BootCpu, BootMsrsIncludeSyscallAndMtrr) {
  bool saw_lstar = false, saw_mtrr = false;
  for (const kvm_msr_entry& e : boot_msrs()) {
    if (e.index == 0xc0000082) saw_lstar = (e.data == 0);
    if (e.index == 0x2ff) saw_mtrr = (e.data == 0x806);
  }
  EXPECT_TRUE(saw_lstar);
  EXPECT_TRUE(saw_mtrr);
}

}  // namespace
}  // namespace kiln::x86
