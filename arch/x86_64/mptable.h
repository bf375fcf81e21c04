// The Intel MultiProcessor Specification 1.4 tables for guests without ACPI: a floating pointer
// and, right after it, a configuration table describing every vCPU (APIC id = vCPU index, the id
// boot_cpu.cc puts in CPUID), one ISA bus, the in-kernel IOAPIC, ISA IRQs 0-23 routed to IOAPIC
// pins 0-23 and the local interrupts (ExtINT on the BSP's LINT0, NMI on every LINT1).
//
// Both live in the first KiB of the EBDA (kMpTableAddr), where Linux's mpparse.c and any MP
// 1.4 guest scan for "_MP_"; that area is not RAM in the e820 map, so the guest never reuses it.
#pragma once

#include <cstdint>

#include "arch/x86_64/layout.h"
#include "base/guest_memory.h"

namespace kiln::x86 {

// Entry sizes fixed by the MP 1.4 specification (bytes).
inline constexpr uint64_t kMpFloatingPointerSize = 16;
inline constexpr uint64_t kMpConfigHeaderSize = 44;
inline constexpr uint64_t kMpProcessorEntrySize = 20;
inline constexpr uint64_t kMpShortEntrySize = 8;       // bus, IOAPIC, I/O and local interrupt
inline constexpr uint32_t kMpIoInterruptEntries = 24;  // ISA IRQ n -> IOAPIC pin n, n = 0..23
inline constexpr uint32_t kMpLocalInterruptEntries = 2;

// Size of the floating pointer plus the configuration table for `cpus` processors.
constexpr uint64_t mptable_size(uint32_t cpus) {
  return kMpFloatingPointerSize + kMpConfigHeaderSize + kMpProcessorEntrySize * cpus +
         kMpShortEntrySize * (2 + kMpIoInterruptEntries + kMpLocalInterruptEntries);
}

// Processors the table can describe: the APIC ids of the CPUs (0..N-1) and of the IOAPIC (N) are
// 8 bits with 0xff meaning "all", so 254; the table (kMpTableMaxSize) has room for them.
inline constexpr uint32_t kMpTableMaxCpus = [] {
  uint32_t cpus = 0;
  while (cpus < 0xfe && mptable_size(cpus + 1) <= kMpTableMaxSize) ++cpus;
  return cpus;
}();

// Writes the floating pointer at kMpTableAddr and the configuration table after it. Throws
// UsageError when `cpus` is 0 or more than kMpTableMaxCpus (nothing is written then), and
// kiln::Error when the EBDA is not guest memory.
void write_mptable(const GuestMemory& mem, uint32_t cpus);

}  // namespace kiln::x86
