// The ACPI tables Kiln gives every VM: RSDP -> XSDT -> FADT (hardware-reduced; sleep control,
// sleep status and reset registers in I/O space; X_DSDT) and MADT; the DSDT (AML) describes
// COM1, every virtio-mmio device ("LNRO0005") and \_S5 for power-off.
//
// Built from a plain description of the machine (no VMM types), at fixed guest-physical
// addresses: the RSDP at x86::kAcpiRsdpAddr (inside 0xe0000-0xfffff, where legacy scanners
// look), the other tables right after it, below x86::kAcpiTablesEnd.
#pragma once

#include <cstdint>
#include <vector>

#include "base/guest_memory.h"

namespace kiln::acpi {

struct VirtioMmioWindow {
  Gpa base = 0;
  uint64_t size = 0;
  uint32_t irq = 0;  // GSI, edge-triggered active-high (Kiln's irqfds)
};

// The I/O ports of the power-management device (devices/legacy/acpi_pm.h).
struct PmRegisters {
  uint16_t sleep_control_port = 0;
  uint16_t sleep_status_port = 0;
  uint16_t reset_port = 0;
  uint8_t reset_value = 0;
  uint8_t s5_sleep_type = 0;  // SLP_TYP the guest writes for S5 (the \_S5 package's value)
};

struct MachineDescription {
  uint32_t vcpus = 1;  // APIC ids 0 .. vcpus-1
  std::vector<VirtioMmioWindow> virtio;
  uint16_t com1_port = 0x3f8;
  uint8_t com1_irq = 4;
  uint16_t i8042_data_port = 0x60;  // command/status port at +4
  uint8_t i8042_irq = 1;
  PmRegisters pm;
};

struct Table {
  Gpa addr = 0;
  std::vector<uint8_t> bytes;
};

struct Tables {
  Table rsdp;
  Table xsdt;
  Table fadt;
  Table madt;
  Table dsdt;
};

// Each table alone (addresses of the tables it points to as arguments); checksums set.
std::vector<uint8_t> build_rsdp(Gpa xsdt);
std::vector<uint8_t> build_xsdt(const std::vector<Gpa>& tables);
std::vector<uint8_t> build_fadt(const PmRegisters& pm, Gpa dsdt);
std::vector<uint8_t> build_madt(const MachineDescription& machine);
std::vector<uint8_t> build_dsdt(const MachineDescription& machine);

// Every table, laid out from x86::kAcpiRsdpAddr. Throws kiln::Error if they do not fit below
// x86::kAcpiTablesEnd or the description is invalid (no vCPUs, an IRQ above the IOAPIC's pins).
Tables build_tables(const MachineDescription& machine);

// Writes the tables into guest memory; throws kiln::Error if the area is not guest RAM.
void write_tables(const GuestMemory& mem, const Tables& tables);

}  // namespace kiln::acpi
