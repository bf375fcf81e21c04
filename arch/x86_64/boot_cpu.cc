#include "arch/x86_64/boot_cpu.h"

#include <array>
#include <cstring>

#include "arch/x86_64/layout.h"

namespace kiln::x86 {

namespace {

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteHuge = 1ull << 7;

constexpr uint32_t kMsrIa32Tsc = 0x10;
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

constexpr uint32_t kApicLvtLint0 = 0x350;
constexpr uint32_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicDeliveryExtInt = 0x7;
constexpr uint32_t kApicDeliveryNmi = 0x4;

uint32_t bits_for(uint32_t count) {
  uint32_t bits = 0;
  while ((1u << bits) < count) ++bits;
  return bits;
}

}  // namespace

kvm_segment SegmentDescriptor::to_kvm() const {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;  // 4 GiB with granularity
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = big;
  s.s = code_or_data;
  s.l = long_mode;
  s.g = 1;
  return s;
}

uint64_t SegmentDescriptor::to_gdt_entry() const {
  const uint64_t limit = 0xfffff;                                              // in 4 KiB units
  const uint64_t access = (1ull << 7) | (uint64_t{code_or_data} << 4) | type;  // P, S, type
  const uint64_t flags = (1ull << 3) | (uint64_t{big} << 2) | (uint64_t{long_mode} << 1);
  return (limit & 0xffff) | (access << 40) | (((limit >> 16) & 0xf) << 48) | (flags << 52);
}

std::vector<SegmentDescriptor> boot_segments() {
  return {
      {kBootCodeSelector, 0xb, true, true, false},   // execute/read, accessed; 64-bit
      {kBootDataSelector, 0x3, true, false, true},   // read/write, accessed
      {kBootTssSelector, 0xb, false, false, false},  // busy 64-bit TSS
  };
}

void write_boot_tables(const GuestMemory& mem) {
  std::array<uint64_t, 5> gdt{};
  for (const SegmentDescriptor& seg : boot_segments()) gdt[seg.selector / 8] = seg.to_gdt_entry();
  mem.checked_write_obj(kGdtAddr, gdt, "boot GDT");
  mem.checked_write_obj(kIdtAddr, uint64_t{0}, "boot IDT");

  mem.checked_write_obj(kPml4Addr, kPdptAddr | kPtePresent | kPteWritable, "PML4");
  for (int gib = 0; gib < kIdentityMappedGiB; ++gib) {
    const Gpa pd = kPdAddr + static_cast<Gpa>(gib) * 0x1000;
    mem.checked_write_obj(kPdptAddr + gib * 8, pd | kPtePresent | kPteWritable, "PDPT");
    std::array<uint64_t, 512> entries{};
    for (uint64_t i = 0; i < entries.size(); ++i) {
      const uint64_t phys = (static_cast<uint64_t>(gib) << 30) | (i << 21);
      entries[i] = phys | kPtePresent | kPteWritable | kPteHuge;
    }
    mem.checked_write_obj(pd, entries, "page directory");
  }
}

std::vector<kvm_cpuid_entry2> vcpu_cpuid(std::vector<kvm_cpuid_entry2> supported, uint32_t index,
                                         uint32_t count) {
  const uint32_t core_bits = bits_for(count);
  for (kvm_cpuid_entry2& e : supported) {
    switch (e.function) {
      case 0x1:
        e.ebx = (index << 24) | ((count & 0xff) << 16) | (8u << 8);  // APIC id, count, clflush 64B
        e.ecx |= 1u << 31;                                           // running under a hypervisor
        if (count > 1) e.edx |= 1u << 28;                            // HTT: count field valid
        break;
      case 0xb:
      case 0x1f:
        // Topology: level 0 = SMT (1 thread), level 1 = core (`count` cores), then invalid.
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1u << 8) | 0;
        } else if (e.index == 1) {
          e.eax = core_bits;
          e.ebx = count;
          e.ecx = (2u << 8) | 1;
        } else {
          e.eax = 0;
          e.ebx = 0;
          e.ecx = e.index;
        }
        e.edx = index;
        break;
      default:
        break;
    }
  }
  return supported;
}

std::vector<kvm_msr_entry> boot_msrs() {
  auto msr = [](uint32_t index, uint64_t data) {
    kvm_msr_entry e{};
    e.index = index;
    e.data = data;
    return e;
  };
  return {
      msr(kMsrSysenterCs, 0),
      msr(kMsrSysenterEsp, 0),
      msr(kMsrSysenterEip, 0),
      msr(kMsrStar, 0),
      msr(kMsrCstar, 0),
      msr(kMsrKernelGsBase, 0),
      msr(kMsrSyscallMask, 0),
      msr(kMsrLstar, 0),
      msr(kMsrIa32Tsc, 0),
      msr(kMsrMiscEnable, 1),
      msr(kMsrMtrrDefType, (1u << 11) | 6),
  };
}

void configure_lapic_lints(kvm_lapic_state& lapic) {
  auto set_mode = [&](uint32_t reg, uint32_t mode) {
    uint32_t value;
    std::memcpy(&value, lapic.regs + reg, sizeof(value));
    value = (value & ~0x700u) | (mode << 8);
    std::memcpy(lapic.regs + reg, &value, sizeof(value));
  };
  set_mode(kApicLvtLint0, kApicDeliveryExtInt);
  set_mode(kApicLvtLint1, kApicDeliveryNmi);
}

void setup_vcpu_common(const KvmSystem& kvm, VcpuFd& vcpu, uint32_t index, uint32_t count) {
  vcpu.set_cpuid2(vcpu_cpuid(kvm.supported_cpuid(), index, count));
  vcpu.set_msrs(boot_msrs());
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  vcpu.set_fpu(fpu);
  kvm_lapic_state lapic = vcpu.get_lapic();
  configure_lapic_lints(lapic);
  vcpu.set_lapic(lapic);
}

void setup_boot_vcpu_registers(VcpuFd& vcpu, Gpa entry, Gpa boot_params) {
  kvm_sregs sregs = vcpu.get_sregs();
  for (const SegmentDescriptor& seg : boot_segments()) {
    const kvm_segment s = seg.to_kvm();
    if (seg.selector == kBootCodeSelector) {
      sregs.cs = s;
    } else if (seg.selector == kBootDataSelector) {
      sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = s;
    } else {
      sregs.tr = s;
    }
  }
  sregs.gdt.base = kGdtAddr;
  sregs.gdt.limit = 5 * 8 - 1;
  sregs.idt.base = kIdtAddr;
  sregs.idt.limit = 8 - 1;
  sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
  sregs.cr3 = kPml4Addr;
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
  vcpu.set_sregs(sregs);

  kvm_regs regs{};
  regs.rflags = 0x2;  // reserved bit 1; interrupts off
  regs.rip = entry;
  regs.rsi = boot_params;
  regs.rsp = kBootStackPointer;
  regs.rbp = kBootStackPointer;
  vcpu.set_regs(regs);
}

}  // namespace kiln::x86
