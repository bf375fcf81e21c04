// RSDP and XSDT, and the layout of all tables in the BIOS area below 1 MiB.
#include "arch/x86_64/acpi/tables.h"

#include <fmt/format.h>

#include "arch/x86_64/acpi/sdt.h"
#include "arch/x86_64/layout.h"
#include "base/error.h"

namespace kiln::acpi {

namespace {

constexpr uint8_t kRsdpRevision = 2;
constexpr size_t kRsdpV1Size = 20;  // the part the first checksum covers
constexpr size_t kRsdpSize = 36;
constexpr size_t kRsdpChecksumOffset = 8;
constexpr size_t kRsdpExtendedChecksumOffset = 32;
constexpr uint8_t kXsdtRevision = 1;
constexpr Gpa kTableAlign = 16;

Gpa align_up(Gpa v) {
  return (v + kTableAlign - 1) & ~(kTableAlign - 1);
}

}  // namespace

std::vector<uint8_t> build_rsdp(Gpa xsdt) {
  Bytes r;
  put_chars(r, "RSD PTR ");
  put_u8(r, 0);  // checksum of the first 20 bytes
  put_chars(r, kOemId);
  put_u8(r, kRsdpRevision);
  put_u32(r, 0);  // no RSDT: the XSDT is the root table
  put_u32(r, kRsdpSize);
  put_u64(r, xsdt);
  put_u8(r, 0);  // extended checksum of all 36 bytes
  put_u8(r, 0);
  put_u16(r, 0);  // reserved
  r[kRsdpChecksumOffset] = checksum_of(std::span(r).first(kRsdpV1Size));
  r[kRsdpExtendedChecksumOffset] = checksum_of(r);
  return r;
}

std::vector<uint8_t> build_xsdt(const std::vector<Gpa>& tables) {
  Bytes t = sdt_header("XSDT", kXsdtRevision);
  for (Gpa addr : tables) put_u64(t, addr);
  finish_table(t);
  return t;
}

Tables build_tables(const MachineDescription& machine) {
  Tables out;
  out.madt.bytes = build_madt(machine);
  out.dsdt.bytes = build_dsdt(machine);
  constexpr size_t kXsdtEntries = 2;  // FADT, MADT
  out.rsdp.addr = x86::kAcpiRsdpAddr;
  out.xsdt.addr = align_up(out.rsdp.addr + kRsdpSize);
  out.fadt.addr = align_up(out.xsdt.addr + kSdtHeaderSize + 8 * kXsdtEntries);
  out.fadt.bytes = build_fadt(machine.pm, 0);  // for its size; rebuilt with the DSDT's address
  out.madt.addr = align_up(out.fadt.addr + out.fadt.bytes.size());
  out.dsdt.addr = align_up(out.madt.addr + out.madt.bytes.size());
  const Gpa end = out.dsdt.addr + out.dsdt.bytes.size();
  if (end > x86::kAcpiTablesEnd)
    throw Error(fmt::format("ACPI tables end at {:#x}, beyond {:#x} ({} vCPUs, {} virtio devices)",
                            end, x86::kAcpiTablesEnd, machine.vcpus, machine.virtio.size()));
  out.fadt.bytes = build_fadt(machine.pm, out.dsdt.addr);
  out.xsdt.bytes = build_xsdt({out.fadt.addr, out.madt.addr});
  out.rsdp.bytes = build_rsdp(out.xsdt.addr);
  return out;
}

void write_tables(const GuestMemory& mem, const Tables& tables) {
  for (const Table* t : {&tables.rsdp, &tables.xsdt, &tables.fadt, &tables.madt, &tables.dsdt}) {
    const std::string what = fmt::format(
        "ACPI table {}", std::string_view(reinterpret_cast<const char*>(t->bytes.data()), 4));
    mem.checked_write(t->addr, t->bytes, what);
  }
}

}  // namespace kiln::acpi
