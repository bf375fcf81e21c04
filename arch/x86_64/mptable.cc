#include "arch/x86_64/mptable.h"

#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <numeric>
#include <span>
#include <vector>

#include "base/error.h"

namespace kiln::x86 {

namespace {

// MP 1.4 structures, little-endian and packed as the specification lays them out.
struct __attribute__((packed)) MpFloatingPointer {
  std::array<char, 4> signature{'_', 'M', 'P', '_'};
  uint32_t config_table = 0;
  uint8_t length = 1;  // in 16-byte units
  uint8_t spec_rev = 4;
  uint8_t checksum = 0;
  std::array<uint8_t, 5> features{};  // feature 1 = 0: a configuration table is present;
                                      // feature 2 bit 7 = 0: no IMCR, virtual wire mode
};

struct __attribute__((packed)) MpConfigHeader {
  std::array<char, 4> signature{'P', 'C', 'M', 'P'};
  uint16_t length = 0;  // header and every base entry
  uint8_t spec_rev = 4;
  uint8_t checksum = 0;
  std::array<char, 8> oem_id{'K', 'I', 'L', 'N', ' ', ' ', ' ', ' '};
  std::array<char, 12> product_id{'K', 'I', 'L', 'N', ' ', 'V', 'M', 'M', ' ', ' ', ' ', ' '};
  uint32_t oem_table = 0;
  uint16_t oem_table_size = 0;
  uint16_t entry_count = 0;
  uint32_t lapic_address = static_cast<uint32_t>(kLapicAddr);
  uint16_t extended_length = 0;
  uint8_t extended_checksum = 0;
  uint8_t reserved = 0;
};

enum EntryType : uint8_t {
  kProcessor = 0,
  kBus = 1,
  kIoApic = 2,
  kIoInterrupt = 3,
  kLocalInterrupt = 4,
};

enum InterruptType : uint8_t { kInt = 0, kNmi = 1, kExtInt = 3 };

struct __attribute__((packed)) MpProcessor {
  uint8_t type = kProcessor;
  uint8_t apic_id = 0;
  uint8_t apic_version = 0x14;  // KVM's LAPIC version register
  uint8_t flags = 0;            // bit 0 enabled, bit 1 bootstrap processor
  uint32_t signature = 0x600;   // family 6 (informational)
  uint32_t features = 0x201;    // CPUID.1:EDX FPU | APIC
  std::array<uint8_t, 8> reserved{};
};

struct __attribute__((packed)) MpBus {
  uint8_t type = kBus;
  uint8_t bus_id = 0;
  std::array<char, 6> bus_type{'I', 'S', 'A', ' ', ' ', ' '};
};

struct __attribute__((packed)) MpIoApic {
  uint8_t type = kIoApic;
  uint8_t apic_id = 0;
  uint8_t version = 0x11;  // KVM's IOAPIC version register
  uint8_t flags = 1;       // usable
  uint32_t address = static_cast<uint32_t>(kIoApicAddr);
};

// I/O (type 3) and local (type 4) interrupt assignments share one layout.
struct __attribute__((packed)) MpInterrupt {
  uint8_t type = kIoInterrupt;
  uint8_t interrupt_type = kInt;
  uint16_t flags = 0;  // polarity and trigger conform to the bus (ISA: active high, edge)
  uint8_t source_bus = 0;
  uint8_t source_irq = 0;
  uint8_t dest_apic_id = 0;
  uint8_t dest_pin = 0;  // IOAPIC INTIN# or LAPIC LINTIN#
};

static_assert(sizeof(MpFloatingPointer) == kMpFloatingPointerSize);
static_assert(sizeof(MpConfigHeader) == kMpConfigHeaderSize);
static_assert(sizeof(MpProcessor) == kMpProcessorEntrySize);
static_assert(sizeof(MpBus) == kMpShortEntrySize);
static_assert(sizeof(MpIoApic) == kMpShortEntrySize);
static_assert(sizeof(MpInterrupt) == kMpShortEntrySize);
static_assert(kMpTableMaxCpus >= 1 && kMpTableMaxCpus < 0xff);

constexpr uint8_t kIsaBusId = 0;
constexpr uint8_t kAllLapics = 0xff;

// Appends entries as bytes and counts them.
class TableBuilder {
 public:
  template <typename T>
  void add(const T& entry) {
    const auto* p = reinterpret_cast<const uint8_t*>(&entry);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
    ++count_;
  }
  std::vector<uint8_t>& bytes() { return bytes_; }
  uint16_t count() const { return count_; }

 private:
  std::vector<uint8_t> bytes_;
  uint16_t count_ = 0;
};

// The byte that makes the sum of `bytes` (with the checksum byte still 0) zero mod 256.
uint8_t checksum_for(std::span<const uint8_t> bytes) {
  return static_cast<uint8_t>(-std::accumulate(bytes.begin(), bytes.end(), 0u));
}

std::vector<uint8_t> config_table(uint32_t cpus) {
  const auto ioapic_id = static_cast<uint8_t>(cpus);  // the first id after the CPUs
  TableBuilder entries;
  for (uint32_t i = 0; i < cpus; ++i) {
    MpProcessor cpu;
    cpu.apic_id = static_cast<uint8_t>(i);
    cpu.flags = i == 0 ? 0x3 : 0x1;
    entries.add(cpu);
  }
  entries.add(MpBus{.bus_id = kIsaBusId});
  entries.add(MpIoApic{.apic_id = ioapic_id});
  // KVM's default GSI routing (no KVM_SET_GSI_ROUTING in Kiln) wires GSI n to IOAPIC pin n for
  // all 24 pins, the in-kernel PIT included (GSI 0 -> pin 0). So ISA IRQ n -> pin n, with no
  // IRQ0 -> pin 2 override: that would describe QEMU's routing, not KVM's default.
  for (uint8_t irq = 0; irq < kMpIoInterruptEntries; ++irq) {
    entries.add(MpInterrupt{
        .source_bus = kIsaBusId, .source_irq = irq, .dest_apic_id = ioapic_id, .dest_pin = irq});
  }
  // The 8259's output reaches the BSP's LINT0 (virtual wire mode); NMI goes to every LINT1.
  entries.add(MpInterrupt{.type = kLocalInterrupt,
                          .interrupt_type = kExtInt,
                          .source_bus = kIsaBusId,
                          .dest_apic_id = 0,
                          .dest_pin = 0});
  entries.add(MpInterrupt{.type = kLocalInterrupt,
                          .interrupt_type = kNmi,
                          .source_bus = kIsaBusId,
                          .dest_apic_id = kAllLapics,
                          .dest_pin = 1});

  MpConfigHeader header;
  header.length = static_cast<uint16_t>(sizeof(header) + entries.bytes().size());
  header.entry_count = entries.count();
  std::vector<uint8_t> table(sizeof(header));
  std::memcpy(table.data(), &header, sizeof(header));
  table.insert(table.end(), entries.bytes().begin(), entries.bytes().end());
  table[offsetof(MpConfigHeader, checksum)] = checksum_for(table);
  return table;
}

}  // namespace

void write_mptable(const GuestMemory& mem, uint32_t cpus) {
  if (cpus == 0 || cpus > kMpTableMaxCpus)
    throw UsageError(fmt::format("--cpus {}: the MP table (8-bit APIC ids) describes 1 to {} vCPUs",
                                 cpus, kMpTableMaxCpus));
  const Gpa table_addr = kMpTableAddr + sizeof(MpFloatingPointer);
  const std::vector<uint8_t> table = config_table(cpus);

  MpFloatingPointer mpf;
  mpf.config_table = static_cast<uint32_t>(table_addr);
  std::array<uint8_t, sizeof(mpf)> mpf_bytes;
  std::memcpy(mpf_bytes.data(), &mpf, sizeof(mpf));
  mpf_bytes[offsetof(MpFloatingPointer, checksum)] = checksum_for(mpf_bytes);

  // Clear the whole window first: no stale "_MP_" from an earlier layout can survive.
  if (!mem.fill(kMpTableAddr, 0, kMpTableMaxSize))
    throw Error(
        fmt::format("MP table: {:#x}+{:#x} is not guest memory", kMpTableAddr, kMpTableMaxSize));
  mem.checked_write(kMpTableAddr, mpf_bytes, "MP floating pointer");
  mem.checked_write(table_addr, table, "MP configuration table");
}

}  // namespace kiln::x86
