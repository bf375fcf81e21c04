// DSDT: AML describing COM1, the i8042 and every virtio-mmio device under \_SB, and \_S5 so the
// guest can power off through the FADT's sleep control register.
#include <fmt/format.h>

#include "arch/x86_64/acpi/aml.h"
#include "arch/x86_64/acpi/sdt.h"
#include "arch/x86_64/acpi/tables.h"
#include "base/error.h"

namespace kiln::acpi {

namespace {

constexpr uint8_t kDsdtRevision = 2;  // 64-bit AML integers
constexpr uint16_t kCom1Ports = 8;

aml::Bytes com1(const MachineDescription& m) {
  return aml::device("COM1",
                     {
                         aml::name("_HID", aml::eisa_id("PNP0501")),
                         aml::name("_UID", aml::integer(0)),
                         aml::name("_CRS", aml::resource_template({
                                               aml::io(m.com1_port, m.com1_port, 0, kCom1Ports),
                                               aml::irq_no_flags(m.com1_irq),
                                           })),
                     });
}

// The i8042 keyboard controller: data port, command/status port, IRQ 1. Guests with ACPI take
// its interrupt from here (a hardware-reduced machine has no fixed ISA IRQ numbers).
aml::Bytes keyboard(const MachineDescription& m) {
  const uint16_t command_port = static_cast<uint16_t>(m.i8042_data_port + 4);
  return aml::device("PS2K",
                     {
                         aml::name("_HID", aml::eisa_id("PNP0303")),
                         aml::name("_UID", aml::integer(0)),
                         aml::name("_CRS", aml::resource_template({
                                               aml::io(m.i8042_data_port, m.i8042_data_port, 0, 1),
                                               aml::io(command_port, command_port, 0, 1),
                                               aml::irq_no_flags(m.i8042_irq),
                                           })),
                     });
}

aml::Bytes virtio_device(size_t index, const VirtioMmioWindow& w) {
  if (w.base > UINT32_MAX || w.size > UINT32_MAX || w.base + w.size > (uint64_t{1} << 32))
    throw Error(fmt::format("virtio-mmio window {:#x}+{:#x} is not below 4 GiB", w.base, w.size));
  return aml::device(
      fmt::format("VR{:02X}", index),
      {
          aml::name("_HID", aml::string("LNRO0005")),
          aml::name("_UID", aml::integer(index)),
          aml::name("_CRS", aml::resource_template({
                                aml::memory32_fixed(true, static_cast<uint32_t>(w.base),
                                                    static_cast<uint32_t>(w.size)),
                                aml::interrupt({}, w.irq),
                            })),
      });
}

}  // namespace

std::vector<uint8_t> build_dsdt(const MachineDescription& machine) {
  if (machine.virtio.size() > 0xff) throw Error("more than 255 virtio-mmio devices");
  std::vector<aml::Bytes> devices{com1(machine), keyboard(machine)};
  for (size_t i = 0; i < machine.virtio.size(); ++i)
    devices.push_back(virtio_device(i, machine.virtio[i]));

  Bytes t = sdt_header("DSDT", kDsdtRevision);
  const aml::Bytes sb = aml::scope("\\_SB", devices);
  t.insert(t.end(), sb.begin(), sb.end());
  // \_S5: SLP_TYPa, SLP_TYPb, two reserved. A hardware-reduced machine uses SLP_TYPa only.
  const aml::Bytes s5 =
      aml::name("\\_S5", aml::package({aml::integer(machine.pm.s5_sleep_type), aml::integer(0),
                                       aml::integer(0), aml::integer(0)}));
  t.insert(t.end(), s5.begin(), s5.end());
  finish_table(t);
  return t;
}

}  // namespace kiln::acpi
