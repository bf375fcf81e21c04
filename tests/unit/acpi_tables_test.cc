// ACPI tables: checksums, lengths, the pointers between tables and the fields Linux relies on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "arch/x86_64/acpi/aml.h"
#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/layout.h"
#include "base/error.h"
#include "devices/legacy/acpi_pm.h"

namespace kiln::acpi {
namespace {

MachineDescription machine(uint32_t vcpus, size_t devices) {
  MachineDescription m;
  m.vcpus = vcpus;
  for (size_t i = 0; i < devices; ++i)
    m.virtio.push_back({x86::kVirtioMmioBase + 0x1000 * i, 0x1000, static_cast<uint32_t>(5 + i)});
  m.pm = {AcpiPm::kSleepControlPort, AcpiPm::kSleepStatusPort, AcpiPm::kResetPort,
          AcpiPm::kResetValue, AcpiPm::kS5SleepType};
  return m;
}

uint8_t sum(std::span<const uint8_t> b) {
  uint8_t s = 0;
  for (uint8_t x : b) s = static_cast<uint8_t>(s + x);
  return s;
}
uint16_t u16(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint16_t>(b.at(off) | b.at(off + 1) << 8);
}
uint32_t u32(const std::vector<uint8_t>& b, size_t off) {
  return u16(b, off) | static_cast<uint32_t>(u16(b, off + 2)) << 16;
}
uint64_t u64(const std::vector<uint8_t>& b, size_t off) {
  return u32(b, off) | static_cast<uint64_t>(u32(b, off + 4)) << 32;
}
std::string sig(const std::vector<uint8_t>& b) {
  return std::string(b.begin(), b.begin() + 4);
}
size_t count(const std::vector<uint8_t>& hay, const std::vector<uint8_t>& needle) {
  size_t n = 0;
  for (auto it = hay.begin();
       (it = std::search(it, hay.end(), needle.begin(), needle.end())) != hay.end(); ++it)
    ++n;
  return n;
}

TEST(AcpiTables, RsdpHasBothChecksumsAndPointsAtTheXsdt) {
  const Tables t = build_tables(machine(4, 3));
  const auto& r = t.rsdp.bytes;
  ASSERT_EQ(r.size(), 36u);
  EXPECT_EQ(std::string(r.begin(), r.begin() + 8), "RSD PTR ");
  EXPECT_EQ(sum(std::span(r).first(20)), 0);
  EXPECT_EQ(sum(r), 0);
  EXPECT_EQ(r[15], 2);  // revision
  EXPECT_EQ(u32(r, 16), 0u);
  EXPECT_EQ(u32(r, 20), 36u);
  EXPECT_EQ(u64(r, 24), t.xsdt.addr);
  EXPECT_EQ(t.rsdp.addr, x86::kAcpiRsdpAddr);
  EXPECT_EQ(t.rsdp.addr % 16, 0u);
}

TEST(AcpiTables, EveryTableSumsToZeroAndFitsTheBiosArea) {
  for (uint32_t cpus : {1u, 4u, 255u, 300u}) {
    const Tables t = build_tables(machine(cpus, 19));
    std::vector<const Table*> all = {&t.xsdt, &t.fadt, &t.madt, &t.dsdt};
    Gpa prev_end = t.rsdp.addr + t.rsdp.bytes.size();
    for (const Table* tab : all) {
      EXPECT_EQ(sum(tab->bytes), 0) << sig(tab->bytes);
      EXPECT_EQ(u32(tab->bytes, 4), tab->bytes.size()) << sig(tab->bytes);
      EXPECT_GE(tab->addr, prev_end) << sig(tab->bytes);  // in order, no overlap
      EXPECT_EQ(tab->addr % 8, 0u);
      prev_end = tab->addr + tab->bytes.size();
    }
    EXPECT_LE(prev_end, x86::kAcpiTablesEnd);
    EXPECT_EQ(sig(t.xsdt.bytes), "XSDT");
    EXPECT_EQ(sig(t.fadt.bytes), "FACP");
    EXPECT_EQ(sig(t.madt.bytes), "APIC");
    EXPECT_EQ(sig(t.dsdt.bytes), "DSDT");
  }
}

TEST(AcpiTables, XsdtListsFadtAndMadt) {
  const Tables t = build_tables(machine(2, 1));
  ASSERT_EQ(t.xsdt.bytes.size(), 36u + 16);
  EXPECT_EQ(u64(t.xsdt.bytes, 36), t.fadt.addr);
  EXPECT_EQ(u64(t.xsdt.bytes, 44), t.madt.addr);
}

TEST(AcpiTables, FadtIsHardwareReducedWithSleepAndResetRegisters) {
  const Tables t = build_tables(machine(1, 0));
  const auto& f = t.fadt.bytes;
  ASSERT_EQ(f.size(), 276u);
  EXPECT_EQ(f[8], 6);        // revision
  EXPECT_EQ(f[131], 5);      // minor revision: 6.5
  EXPECT_EQ(u16(f, 46), 0);  // no SCI
  const uint32_t flags = u32(f, 112);
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  EXPECT_EQ(u16(f, 109) & (1u << 5), 1u << 5) << "CMOS RTC not present";
  EXPECT_EQ(u16(f, 109) & (1u << 1), 1u << 1) << "an 8042 is present";
  EXPECT_EQ(u64(f, 140), t.dsdt.addr);  // X_DSDT
  EXPECT_EQ(u32(f, 40), 0u);            // 32-bit DSDT unused
  struct Gas {
    size_t off;
    uint16_t port;
  } regs[] = {
      {116, AcpiPm::kResetPort}, {244, AcpiPm::kSleepControlPort}, {256, AcpiPm::kSleepStatusPort}};
  for (const Gas& g : regs) {
    EXPECT_EQ(f[g.off], 1) << g.off;      // system I/O
    EXPECT_EQ(f[g.off + 1], 8) << g.off;  // 8 bits wide
    EXPECT_EQ(f[g.off + 2], 0) << g.off;
    EXPECT_EQ(f[g.off + 3], 1) << g.off;  // byte access
    EXPECT_EQ(u64(f, g.off + 4), g.port) << g.off;
  }
  EXPECT_EQ(f[128], AcpiPm::kResetValue);
  EXPECT_EQ(std::string(f.begin() + 268, f.begin() + 272), "KILN");
  // No PM1, PM2, GPE or PM timer blocks (32-bit or X_ forms).
  for (size_t off = 56; off < 88; ++off) EXPECT_EQ(f[off], 0) << off;
  for (size_t off = 148; off < 244; ++off) EXPECT_EQ(f[off], 0) << off;
}

TEST(AcpiTables, MadtHasOneLocalApicPerVcpuTheIoApicAndIsaOverrides) {
  const Tables t = build_tables(machine(4, 3));
  const auto& m = t.madt.bytes;
  EXPECT_EQ(u32(m, 36), x86::kLapicAddr);
  EXPECT_EQ(u32(m, 40), 1u);  // PCAT_COMPAT
  std::vector<uint32_t> apic_ids, override_irqs;
  int ioapics = 0, nmis = 0;
  for (size_t off = 44; off < m.size(); off += m.at(off + 1)) {
    ASSERT_GE(m.at(off + 1), 2);
    switch (m[off]) {
      case 0:
        ASSERT_EQ(m[off + 1], 8);
        EXPECT_EQ(m[off + 2], apic_ids.size());  // processor UID
        EXPECT_EQ(u32(m, off + 4), 1u);          // enabled
        apic_ids.push_back(m[off + 3]);
        break;
      case 1:
        ASSERT_EQ(m[off + 1], 12);
        EXPECT_EQ(u32(m, off + 4), x86::kIoApicAddr);
        EXPECT_EQ(u32(m, off + 8), 0u);
        ++ioapics;
        break;
      case 2:
        ASSERT_EQ(m[off + 1], 10);
        EXPECT_EQ(m[off + 2], 0);                // ISA
        EXPECT_EQ(u32(m, off + 4), m[off + 3]);  // identity
        EXPECT_EQ(u16(m, off + 8), 0x5);         // edge, active high
        override_irqs.push_back(m[off + 3]);
        break;
      case 4:
        EXPECT_EQ(m[off + 5], 1);  // LINT1
        ++nmis;
        break;
      default:
        ADD_FAILURE() << "unexpected MADT entry type " << int{m[off]};
    }
  }
  EXPECT_EQ(apic_ids, (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(ioapics, 1);
  EXPECT_EQ(nmis, 1);
  // The keyboard, COM1 and the devices; never IRQ 0.
  EXPECT_EQ(override_irqs, (std::vector<uint32_t>{1, 4, 5, 6, 7}));
}

TEST(AcpiTables, MadtUsesX2ApicEntriesBeyondApicId254) {
  const Tables t = build_tables(machine(300, 0));
  const auto& m = t.madt.bytes;
  int xapic = 0, x2apic = 0;
  uint32_t last_x2 = 0;
  for (size_t off = 44; off < m.size(); off += m.at(off + 1)) {
    if (m[off] == 0) ++xapic;
    if (m[off] == 9) {
      ++x2apic;
      last_x2 = u32(m, off + 4);
    }
  }
  EXPECT_EQ(xapic, 255);
  EXPECT_EQ(x2apic, 45);
  EXPECT_EQ(last_x2, 299u);
}

TEST(AcpiTables, DsdtDescribesCom1EveryVirtioDeviceAndS5) {
  const MachineDescription m = machine(1, 3);
  const Tables t = build_tables(m);
  const auto& d = t.dsdt.bytes;
  EXPECT_EQ(d[8], 2);  // revision 2: 64-bit integers
  EXPECT_EQ(count(d, aml::string("LNRO0005")), 3u);
  EXPECT_EQ(count(d, aml::eisa_id("PNP0501")), 1u);
  EXPECT_EQ(count(d, aml::eisa_id("PNP0303")), 1u);
  // The keyboard's resources: IO 0x60 and 0x64, one byte each, and IRQ 1.
  const aml::Bytes kbd_crs = aml::resource_template(
      {aml::io(0x60, 0x60, 0, 1), aml::io(0x64, 0x64, 0, 1), aml::irq_no_flags(1)});
  EXPECT_EQ(count(d, kbd_crs), 1u);
  EXPECT_EQ(count(d, aml::io(0x3f8, 0x3f8, 0, 8)), 1u);
  EXPECT_EQ(count(d, aml::irq_no_flags(4)), 1u);
  for (size_t i = 0; i < m.virtio.size(); ++i) {
    const auto& w = m.virtio[i];
    EXPECT_EQ(count(d, aml::memory32_fixed(true, static_cast<uint32_t>(w.base), 0x1000)), 1u);
    EXPECT_EQ(count(d, aml::interrupt({}, w.irq)), 1u);
    const std::string name = "VR0" + std::to_string(i);
    EXPECT_EQ(count(d, std::vector<uint8_t>(name.begin(), name.end())), 1u) << name;
  }
  EXPECT_EQ(
      count(d, aml::name("\\_S5", aml::package({aml::integer(AcpiPm::kS5SleepType), aml::integer(0),
                                                aml::integer(0), aml::integer(0)}))),
      1u);
}

TEST(AcpiTables, RefusesWhatTheMachineCannotDescribe) {
  EXPECT_THROW(build_tables(machine(0, 0)), Error);
  EXPECT_THROW(build_tables(machine(20000, 0)), Error);  // the MADT outgrows 0xe0000-0xfffff
  MachineDescription bad_irq = machine(1, 1);
  bad_irq.virtio[0].irq = 24;
  EXPECT_THROW(build_tables(bad_irq), Error);
  MachineDescription high = machine(1, 1);
  high.virtio[0].base = 0x100000000;
  EXPECT_THROW(build_tables(high), Error);
}

TEST(AcpiTables, WrittenIntoGuestMemoryAtTheirAddresses) {
  GuestMemory mem({{0, 2 << 20}});
  const Tables t = build_tables(machine(2, 2));
  write_tables(mem, t);
  for (const Table* tab : {&t.rsdp, &t.xsdt, &t.fadt, &t.madt, &t.dsdt}) {
    std::vector<uint8_t> back(tab->bytes.size());
    ASSERT_TRUE(mem.read(tab->addr, back));
    EXPECT_EQ(back, tab->bytes);
  }
  GuestMemory tiny({{0, 0x80000}});  // no RAM behind 0xe0000
  EXPECT_THROW(write_tables(tiny, t), Error);
}

}  // namespace
}  // namespace kiln::acpi
