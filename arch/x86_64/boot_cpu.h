// x86-64 vCPU state for direct 64-bit entry (Linux boot protocol, 64-bit): the boot GDT and
// identity page tables in guest memory, and each vCPU's registers, FPU, MSRs, LAPIC and CPUID.
#pragma once

#include "base/kvm_uapi.h"

#include <cstdint>
#include <vector>

#include "base/guest_memory.h"
#include "base/kvm.h"

namespace kiln::x86 {

inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint16_t kBootTssSelector = 0x20;

// One GDT descriptor as a KVM segment and as the 8-byte table entry.
struct SegmentDescriptor {
  uint16_t selector;
  uint8_t type;  // 4-bit type field
  bool code_or_data;
  bool long_mode;
  bool big;  // D/B
  kvm_segment to_kvm() const;
  uint64_t to_gdt_entry() const;
};

// The boot GDT: null, null, code64 (0x10), data (0x18), TSS (0x20).
std::vector<SegmentDescriptor> boot_segments();

// Writes the boot GDT, an empty IDT and 4 GiB of identity page tables into guest memory.
void write_boot_tables(const GuestMemory& mem);

// CPUID for vCPU `index` of `count`, from KVM_GET_SUPPORTED_CPUID: APIC IDs in leaves 1, 0xb
// and 0x1f, the hypervisor bit, and the topology of `count` single-thread cores.
std::vector<kvm_cpuid_entry2> vcpu_cpuid(std::vector<kvm_cpuid_entry2> supported, uint32_t index,
                                         uint32_t count);

// Boot MSRs every vCPU starts with (SYSCALL/SYSENTER cleared, fast strings, MTRR write-back).
std::vector<kvm_msr_entry> boot_msrs();

// Sets LAPIC LINT0 to ExtINT (8259 PIC output) and LINT1 to NMI, as a PC's firmware does.
void configure_lapic_lints(kvm_lapic_state& lapic);

// Applies CPUID, MSRs, FPU and LAPIC to any vCPU.
void setup_vcpu_common(const KvmSystem& kvm, VcpuFd& vcpu, uint32_t index, uint32_t count);

// Registers and segments of the boot vCPU for 64-bit entry at `entry` with RSI = boot_params.
void setup_boot_vcpu_registers(VcpuFd& vcpu, Gpa entry, Gpa boot_params);

}  // namespace kiln::x86
