// The x86-64 guest-physical memory map Kiln builds. One place for every fixed address.
//
//   0x0000_0500  GDT (boot segments: 0x10 code64, 0x18 data, 0x20 TSS)
//   0x0000_0520  IDT (empty: the guest installs its own)
//   0x0000_7000  boot_params ("zero page")
//   0x0000_8ff0  initial stack pointer
//   0x0000_9000  PML4, 0xa000 PDPT, 0xb000-0xefff four page directories (2 MiB pages):
//                identity map of the first 4 GiB
//   0x0002_0000  kernel command line (up to 64 KiB)
//   0x0003_0000  setup_data chain (RNG seed)
//   0x0009_fc00  EBDA .. 0x10_0000: legacy area, not RAM in e820. The EBDA's first KiB holds the
//                MP floating pointer, the MP configuration table follows (mptable.h)
//   0x000e_0000  ACPI: RSDP (where legacy scanners of 0xe0000-0xfffff find it), then XSDT,
//                FADT, MADT, DSDT, all below 1 MiB
//   0x0010_0000  (1 MiB) kernel and initrd; RAM up to min(memory, 3 GiB)
//   0xc000_0000  (3 GiB) 32-bit MMIO hole up to 4 GiB: virtio-mmio windows from 0xd000_0000,
//                IOAPIC at 0xfec0_0000, LAPIC at 0xfee0_0000
//   0x1_0000_0000 (4 GiB) the rest of RAM, when memory > 3 GiB
#pragma once

#include <cstdint>
#include <vector>

#include "base/guest_memory.h"

namespace kiln::x86 {

inline constexpr Gpa kGdtAddr = 0x500;
inline constexpr Gpa kIdtAddr = 0x520;
inline constexpr Gpa kBootParamsAddr = 0x7000;
inline constexpr Gpa kBootStackPointer = 0x8ff0;
inline constexpr Gpa kPml4Addr = 0x9000;
inline constexpr Gpa kPdptAddr = 0xa000;
inline constexpr Gpa kPdAddr = 0xb000;  // four consecutive 4 KiB page directories
inline constexpr int kIdentityMappedGiB = 4;
inline constexpr Gpa kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMaxSize = 0x10000;
inline constexpr Gpa kSetupDataAddr = 0x30000;
inline constexpr Gpa kEbdaStart = 0x9fc00;
// MP floating pointer in the EBDA's first KiB (where the MP spec says to look), the configuration
// table right after it, running past the EBDA into the legacy hole below 0xe0000 when there are
// many vCPUs (254 need 5.4 KiB). None of it is RAM in the e820 map.
inline constexpr Gpa kMpTableAddr = kEbdaStart;
inline constexpr uint64_t kMpTableMaxSize = 0x2000;
inline constexpr Gpa kAcpiRsdpAddr = 0xe0000;    // 16-byte aligned, inside the BIOS area
inline constexpr Gpa kAcpiTablesEnd = 0x100000;  // exclusive
inline constexpr Gpa kHighMemStart = 0x100000;
inline constexpr Gpa kMmioHoleStart = 0xc0000000;
inline constexpr Gpa kMmioHoleEnd = 0x100000000;
inline constexpr Gpa kVirtioMmioBase = 0xd0000000;  // virtio-mmio windows, 4 KiB each
inline constexpr Gpa kVirtioMmioEnd = 0xfe000000;
inline constexpr uint32_t kFirstDeviceIrq = 5;  // 0-4 are the PIT, keyboard, cascade, COM2, COM1
inline constexpr uint32_t kLastDeviceIrq = 23;  // the IOAPIC has 24 pins
inline constexpr Gpa kIoApicAddr = 0xfec00000;
inline constexpr Gpa kLapicAddr = 0xfee00000;

// RAM ranges for `memory_bytes` of guest RAM: below the MMIO hole, then from 4 GiB.
std::vector<GuestMemory::Range> ram_ranges(uint64_t memory_bytes);

}  // namespace kiln::x86
