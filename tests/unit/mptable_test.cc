// The MP table is checked by parsing guest memory the way a guest does (MP 1.4 byte offsets),
// not through Kiln's own structures.
#include "arch/x86_64/mptable.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "arch/x86_64/layout.h"
#include "base/error.h"

namespace kiln::x86 {
namespace {

struct Entry {
  uint8_t type;
  std::vector<uint8_t> bytes;
};

struct ParsedTable {
  uint32_t table_addr = 0;
  uint16_t length = 0;
  uint16_t entry_count = 0;
  uint32_t lapic = 0;
  std::vector<Entry> entries;
};

uint8_t byte_sum(const GuestMemory& mem, Gpa addr, uint64_t len) {
  std::vector<uint8_t> bytes(len);
  EXPECT_TRUE(mem.read(addr, bytes));
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum += b;
  return sum;
}

template <typename T>
T at(const GuestMemory& mem, Gpa addr) {
  return mem.read_obj<T>(addr).value();
}

ParsedTable parse(const GuestMemory& mem) {
  ParsedTable t;
  char sig[4];
  std::memcpy(sig, mem.checked_slice(kMpTableAddr, 4, "test").data(), 4);
  EXPECT_EQ(std::string(sig, 4), "_MP_");
  EXPECT_EQ(at<uint8_t>(mem, kMpTableAddr + 8), 1);   // length: one 16-byte paragraph
  EXPECT_EQ(at<uint8_t>(mem, kMpTableAddr + 9), 4);   // spec revision 1.4
  EXPECT_EQ(at<uint8_t>(mem, kMpTableAddr + 11), 0);  // feature 1: a table is present
  EXPECT_EQ(byte_sum(mem, kMpTableAddr, 16), 0) << "floating pointer checksum";
  t.table_addr = at<uint32_t>(mem, kMpTableAddr + 4);
  std::memcpy(sig, mem.checked_slice(t.table_addr, 4, "test").data(), 4);
  EXPECT_EQ(std::string(sig, 4), "PCMP");
  t.length = at<uint16_t>(mem, t.table_addr + 4);
  EXPECT_EQ(at<uint8_t>(mem, t.table_addr + 6), 4);
  EXPECT_EQ(byte_sum(mem, t.table_addr, t.length), 0) << "configuration table checksum";
  t.entry_count = at<uint16_t>(mem, t.table_addr + 34);
  t.lapic = at<uint32_t>(mem, t.table_addr + 36);
  Gpa p = t.table_addr + 44;
  for (uint16_t i = 0; i < t.entry_count; ++i) {
    const uint8_t type = at<uint8_t>(mem, p);
    const uint64_t size = type == 0 ? 20 : 8;
    std::vector<uint8_t> bytes(size);
    EXPECT_TRUE(mem.read(p, bytes));
    t.entries.push_back({type, bytes});
    p += size;
  }
  EXPECT_EQ(p, t.table_addr + t.length) << "entries fill the table exactly";
  return t;
}

std::vector<const Entry*> of_type(const ParsedTable& t, uint8_t type) {
  std::vector<const Entry*> out;
  for (const Entry& e : t.entries)
    if (e.type == type) out.push_back(&e);
  return out;
}

class MpTable : public ::testing::TestWithParam<uint32_t> {};

TEST_P(MpTable, DescribesEveryVcpuTheIoApicAndTheInterrupts) {
  const uint32_t cpus = GetParam();
  GuestMemory mem({{0, 16 << 20}});
  write_mptable(mem, cpus);
  const ParsedTable t = parse(mem);
  EXPECT_EQ(t.table_addr, kMpTableAddr + 16);
  EXPECT_EQ(t.lapic, kLapicAddr);
  EXPECT_LE(kMpTableAddr + 16 + t.length, kMpTableAddr + kMpTableMaxSize) << "inside the EBDA KiB";
  EXPECT_EQ(16 + t.length, mptable_size(cpus));

  const auto procs = of_type(t, 0);
  ASSERT_EQ(procs.size(), cpus);
  for (uint32_t i = 0; i < cpus; ++i) {
    EXPECT_EQ(procs[i]->bytes[1], i) << "APIC id = vCPU index";
    EXPECT_EQ(procs[i]->bytes[3], i == 0 ? 0x3 : 0x1) << "enabled, BSP flag only on CPU 0";
  }

  const auto buses = of_type(t, 1);
  ASSERT_EQ(buses.size(), 1u);
  EXPECT_EQ(std::string(buses[0]->bytes.begin() + 2, buses[0]->bytes.end()), "ISA   ");
  const uint8_t isa_bus = buses[0]->bytes[1];

  const auto ioapics = of_type(t, 2);
  ASSERT_EQ(ioapics.size(), 1u);
  const uint8_t ioapic_id = ioapics[0]->bytes[1];
  EXPECT_EQ(ioapic_id, cpus) << "first id after the CPUs";
  EXPECT_EQ(ioapics[0]->bytes[3] & 1, 1) << "usable";
  uint32_t ioapic_addr;
  std::memcpy(&ioapic_addr, ioapics[0]->bytes.data() + 4, 4);
  EXPECT_EQ(ioapic_addr, kIoApicAddr);

  const auto irqs = of_type(t, 3);
  ASSERT_EQ(irqs.size(), 24u);
  std::map<int, int> pin_of_irq;
  for (const Entry* e : irqs) {
    EXPECT_EQ(e->bytes[1], 0) << "INT";
    EXPECT_EQ(e->bytes[4], isa_bus);
    EXPECT_EQ(e->bytes[6], ioapic_id);
    pin_of_irq[e->bytes[5]] = e->bytes[7];
  }
  ASSERT_EQ(pin_of_irq.size(), 24u) << "IRQs 0..23 once each";
  for (int irq = 0; irq < 24; ++irq) EXPECT_EQ(pin_of_irq[irq], irq) << "KVM default routing";

  const auto lints = of_type(t, 4);
  ASSERT_EQ(lints.size(), 2u);
  EXPECT_EQ(lints[0]->bytes[1], 3);     // ExtINT
  EXPECT_EQ(lints[0]->bytes[6], 0);     // the BSP
  EXPECT_EQ(lints[0]->bytes[7], 0);     // LINT0
  EXPECT_EQ(lints[1]->bytes[1], 1);     // NMI
  EXPECT_EQ(lints[1]->bytes[6], 0xff);  // every LAPIC
  EXPECT_EQ(lints[1]->bytes[7], 1);     // LINT1
  EXPECT_EQ(t.entry_count, cpus + 1 + 1 + 24 + 2);
}

INSTANTIATE_TEST_SUITE_P(Cpus, MpTable, ::testing::Values(1u, 2u, 4u, 16u, kMpTableMaxCpus));

TEST(MpTableLimits, MaxCpusIsWhatFitsTheEbdaKib) {
  EXPECT_LE(mptable_size(kMpTableMaxCpus), kMpTableMaxSize);
  EXPECT_EQ(kMpTableMaxCpus, 254u);  // APIC ids 0..253 for CPUs, 254 for the IOAPIC
}

TEST(MpTableLimits, TooManyOrZeroCpusIsAUsageErrorAndWritesNothing) {
  GuestMemory mem({{0, 16 << 20}});
  for (uint32_t cpus : {0u, kMpTableMaxCpus + 1, 255u, 1024u}) {
    try {
      write_mptable(mem, cpus);
      ADD_FAILURE() << cpus << " vCPUs accepted";
    } catch (const UsageError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--cpus " + std::to_string(cpus)), std::string::npos) << msg;
      EXPECT_NE(msg.find("1 to 254"), std::string::npos) << msg;
    }
  }
  EXPECT_EQ(at<uint32_t>(mem, kMpTableAddr), 0u);
}

TEST(MpTableLimits, RewritingWithFewerCpusLeavesNoStaleEntries) {
  GuestMemory mem({{0, 16 << 20}});
  write_mptable(mem, kMpTableMaxCpus);
  write_mptable(mem, 1);
  EXPECT_EQ(of_type(parse(mem), 0).size(), 1u);
  std::vector<uint8_t> rest(kMpTableMaxSize - mptable_size(1), 0xaa);
  ASSERT_TRUE(mem.read(kMpTableAddr + mptable_size(1), rest));
  EXPECT_EQ(rest, std::vector<uint8_t>(rest.size(), 0));
}

TEST(MpTableLimits, MissingEbdaIsAnError) {
  GuestMemory mem({{0, 0x9f000}});
  EXPECT_THROW(write_mptable(mem, 1), Error);
}

}  // namespace
}  // namespace kiln::x86
