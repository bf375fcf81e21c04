// MADT (signature "APIC"): the local APIC of every vCPU, the IOAPIC, interrupt source overrides
// and the LINT1 NMI (ACPI 6.5, 5.2.12).
//
// Interrupt routing is KVM's default: GSI n is IOAPIC pin n (and 8259 line n below 16), so the
// in-kernel PIT's IRQ 0 arrives on pin 0, not pin 2 as on a PC (QEMU reroutes GSI 0 to pin 2;
// Kiln does not). Hence no IRQ0 -> GSI2 override, and none for IRQ 0 at all: a hardware-reduced
// FADT has SCI_INT 0, and Linux reads an override of IRQ 0 as the SCI's. The overrides restate
// the ISA IRQs Kiln wires (COM1, virtio devices below 16) as what Kiln's irqfds deliver:
// edge-triggered, active-high, identity-mapped.
#include <fmt/format.h>

#include <set>

#include "arch/x86_64/acpi/sdt.h"
#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/layout.h"
#include "base/error.h"

namespace kiln::acpi {

namespace {

constexpr uint8_t kMadtRevision = 5;
constexpr uint32_t kPcatCompat = 1;  // the machine also has dual 8259 PICs

constexpr uint8_t kTypeLocalApic = 0;
constexpr uint8_t kTypeIoApic = 1;
constexpr uint8_t kTypeInterruptOverride = 2;
constexpr uint8_t kTypeLocalApicNmi = 4;
constexpr uint8_t kTypeLocalX2Apic = 9;
constexpr uint32_t kLocalApicEnabled = 1;
constexpr uint8_t kIoApicId = 0;
constexpr uint16_t kActiveHighEdge = 0x1 | (0x1 << 2);  // polarity 01, trigger mode 01
constexpr uint8_t kAllProcessors = 0xff;
constexpr uint8_t kNmiLint = 1;
constexpr uint32_t kMaxXApicId = 0xfe;  // 0xff is the broadcast id

}  // namespace

std::vector<uint8_t> build_madt(const MachineDescription& machine) {
  if (machine.vcpus == 0) throw Error("MADT for a machine without vCPUs");
  Bytes t = sdt_header("APIC", kMadtRevision);
  put_u32(t, static_cast<uint32_t>(x86::kLapicAddr));
  put_u32(t, kPcatCompat);

  for (uint32_t cpu = 0; cpu < machine.vcpus; ++cpu) {
    const uint32_t apic_id = cpu;  // as in each vCPU's CPUID (arch/x86_64/boot_cpu.cc)
    if (apic_id <= kMaxXApicId) {
      put_u8(t, kTypeLocalApic);
      put_u8(t, 8);
      put_u8(t, static_cast<uint8_t>(cpu));  // ACPI processor UID
      put_u8(t, static_cast<uint8_t>(apic_id));
      put_u32(t, kLocalApicEnabled);
    } else {
      put_u8(t, kTypeLocalX2Apic);
      put_u8(t, 16);
      put_u16(t, 0);
      put_u32(t, apic_id);
      put_u32(t, kLocalApicEnabled);
      put_u32(t, cpu);  // ACPI processor UID
    }
  }

  put_u8(t, kTypeIoApic);
  put_u8(t, 12);
  put_u8(t, kIoApicId);
  put_u8(t, 0);
  put_u32(t, static_cast<uint32_t>(x86::kIoApicAddr));
  put_u32(t, 0);  // GSI base

  std::set<uint32_t> isa_irqs{machine.com1_irq, machine.i8042_irq};
  for (const VirtioMmioWindow& w : machine.virtio) {
    if (w.irq > x86::kLastDeviceIrq)
      throw Error(fmt::format("virtio-mmio device at {:#x}: IRQ {} is beyond the IOAPIC's pins",
                              w.base, w.irq));
    if (w.irq < 16) isa_irqs.insert(w.irq);
  }
  isa_irqs.erase(0);
  for (uint32_t irq : isa_irqs) {
    put_u8(t, kTypeInterruptOverride);
    put_u8(t, 10);
    put_u8(t, 0);  // bus: ISA
    put_u8(t, static_cast<uint8_t>(irq));
    put_u32(t, irq);  // GSI
    put_u16(t, kActiveHighEdge);
  }

  put_u8(t, kTypeLocalApicNmi);
  put_u8(t, 6);
  put_u8(t, kAllProcessors);
  put_u16(t, 0);  // flags: conforms to the bus
  put_u8(t, kNmiLint);

  finish_table(t);
  return t;
}

}  // namespace kiln::acpi
