// FADT (signature "FACP"), revision 6.5, hardware-reduced: no PM1/GPE blocks, no SCI, no FACS.
// Power-off and reset go through the sleep control and reset registers (ACPI 6.5, 5.2.9).
#include "arch/x86_64/acpi/sdt.h"
#include "arch/x86_64/acpi/tables.h"

namespace kiln::acpi {

namespace {

constexpr uint8_t kFadtRevision = 6;
constexpr uint8_t kFadtMinorRevision = 5;
constexpr size_t kFadtSize = 276;

// Field offsets.
constexpr size_t kIapcBootArchOffset = 109;
constexpr size_t kFlagsOffset = 112;
constexpr size_t kResetRegOffset = 116;
constexpr size_t kResetValueOffset = 128;
constexpr size_t kMinorRevisionOffset = 131;
constexpr size_t kXDsdtOffset = 140;
constexpr size_t kSleepControlOffset = 244;
constexpr size_t kSleepStatusOffset = 256;
constexpr size_t kHypervisorVendorOffset = 268;

// IAPC_BOOT_ARCH: an 8042 (Kiln's keyboard controller), no VGA, no CMOS RTC (Kiln emulates
// neither).
constexpr uint16_t kBootArch8042 = 1u << 1;
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;
constexpr uint16_t kBootArchCmosRtcNotPresent = 1u << 5;
// Flags: no fixed-feature power or sleep button, reset register supported, hardware-reduced.
constexpr uint32_t kFlagPowerButton = 1u << 4;
constexpr uint32_t kFlagSleepButton = 1u << 5;
constexpr uint32_t kFlagResetRegSup = 1u << 10;
constexpr uint32_t kFlagHwReducedAcpi = 1u << 20;

void put_gas_at(Bytes& table, size_t offset, uint16_t port) {
  Bytes gas;
  put_gas_io8(gas, port);
  std::copy(gas.begin(), gas.end(), table.begin() + static_cast<std::ptrdiff_t>(offset));
}

}  // namespace

std::vector<uint8_t> build_fadt(const PmRegisters& pm, Gpa dsdt) {
  Bytes t = sdt_header("FACP", kFadtRevision);
  t.resize(kFadtSize, 0);
  // FIRMWARE_CTRL, DSDT (32-bit), SCI_INT and every PM1/PM2/GPE/PM timer block stay zero.
  const uint16_t boot_arch = kBootArch8042 | kBootArchVgaNotPresent | kBootArchCmosRtcNotPresent;
  t[kIapcBootArchOffset] = static_cast<uint8_t>(boot_arch);
  t[kIapcBootArchOffset + 1] = static_cast<uint8_t>(boot_arch >> 8);
  set_u32(t, kFlagsOffset,
          kFlagPowerButton | kFlagSleepButton | kFlagResetRegSup | kFlagHwReducedAcpi);
  put_gas_at(t, kResetRegOffset, pm.reset_port);
  t[kResetValueOffset] = pm.reset_value;
  t[kMinorRevisionOffset] = kFadtMinorRevision;
  set_u64(t, kXDsdtOffset, dsdt);
  put_gas_at(t, kSleepControlOffset, pm.sleep_control_port);
  put_gas_at(t, kSleepStatusOffset, pm.sleep_status_port);
  const std::string_view vendor = "KILN";
  std::copy(vendor.begin(), vendor.end(), t.begin() + kHypervisorVendorOffset);
  finish_table(t);
  return t;
}

}  // namespace kiln::acpi
