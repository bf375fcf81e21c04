// Kiln's ACPI tables disassembled by ACPICA's iasl (Debian: acpica-tools): every table must
// disassemble without an error, warning or remark, and the DSDT's text must show each virtio-mmio
// device with the window and interrupt Kiln gave it. KILN_IASL is set by meson.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/layout.h"
#include "devices/legacy/acpi_pm.h"

namespace kiln::acpi {
namespace {

namespace fs = std::filesystem;

struct Disassembly {
  int status = -1;
  std::string output;  // iasl's stdout and stderr
  std::string dsl;     // the disassembled table
};

class AcpiIasl : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* iasl = std::getenv("KILN_IASL");
    iasl_ = iasl ? iasl : "";
    ASSERT_FALSE(iasl_.empty())
        << "iasl was not found when meson configured this build: install it with "
           "scripts/setup.sh (Debian package acpica-tools), then meson setup --reconfigure build";
    std::string dir = (fs::temp_directory_path() / "kiln-iasl-XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  Disassembly disassemble(const std::string& name, const std::vector<uint8_t>& bytes) {
    const fs::path dat = dir_ / (name + ".dat");
    std::ofstream(dat, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    const std::string cmd =
        "cd '" + dir_.string() + "' && '" + iasl_ + "' -d " + name + ".dat 2>&1";
    Disassembly d;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return d;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) d.output.append(buf, n);
    const int raw = ::pclose(p);
    d.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    std::ifstream dsl(dir_ / (name + ".dsl"));
    std::stringstream ss;
    ss << dsl.rdbuf();
    d.dsl = ss.str();
    return d;
  }

  std::string iasl_;
  fs::path dir_;
};

MachineDescription four_cpus_three_disks() {
  MachineDescription m;
  m.vcpus = 4;
  for (uint32_t i = 0; i < 3; ++i)
    m.virtio.push_back({x86::kVirtioMmioBase + 0x1000 * i, 0x1000, 5 + i});
  m.pm = {AcpiPm::kSleepControlPort, AcpiPm::kSleepStatusPort, AcpiPm::kResetPort,
          AcpiPm::kResetValue, AcpiPm::kS5SleepType};
  return m;
}

// Problems iasl reports: its exit status, and lines of its output or of the disassembly that
// name an error, warning, remark or an invalid/incorrect/unknown value.
std::vector<std::string> problems(const Disassembly& d) {
  std::vector<std::string> out;
  if (d.status != 0) out.push_back("exit status " + std::to_string(d.status));
  if (d.dsl.empty()) out.push_back("no .dsl written");
  static const std::regex bad(R"(error|warning|remark|invalid|incorrect|unknown|\*\*\*\*)",
                              std::regex::icase);
  for (const std::string* text : {&d.output, &d.dsl}) {
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line))
      if (std::regex_search(line, bad)) out.push_back(line);
  }
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

// Without iasl's comments, whitespace runs as one space.
std::string squeeze(const std::string& s) {
  std::string bare = std::regex_replace(s, std::regex(R"(/\*[\s\S]*?\*/)"), "");
  bare = std::regex_replace(bare, std::regex(R"(//[^\n]*)"), "");
  return std::regex_replace(bare, std::regex(R"(\s+)"), " ");
}

TEST_F(AcpiIasl, EveryTableDisassemblesCleanly) {
  const Tables t = build_tables(four_cpus_three_disks());
  for (const auto& [name, table] : {std::pair{"xsdt", &t.xsdt}, std::pair{"facp", &t.fadt},
                                    std::pair{"apic", &t.madt}, std::pair{"dsdt", &t.dsdt}}) {
    const Disassembly d = disassemble(name, table->bytes);
    EXPECT_TRUE(problems(d).empty()) << name << ":\n" << joined(problems(d)) << d.output << d.dsl;
  }
}

// The check above must be able to fail: iasl reports a table whose checksum is off.
TEST_F(AcpiIasl, ABrokenChecksumIsCaught) {
  std::vector<uint8_t> madt = build_tables(four_cpus_three_disks()).madt.bytes;
  madt[9] ^= 0x5a;
  const std::vector<std::string> found = problems(disassemble("apic", madt));
  EXPECT_FALSE(found.empty());
  EXPECT_NE(joined(found).find("checksum"), std::string::npos) << joined(found);
}

TEST_F(AcpiIasl, FadtAndMadtDecodeToKilnsValues) {
  const Tables t = build_tables(four_cpus_three_disks());
  const std::string facp = squeeze(disassemble("facp", t.fadt.bytes).dsl);
  EXPECT_NE(facp.find("Hardware Reduced (V5) : 1"), std::string::npos) << facp;
  EXPECT_NE(facp.find("Reset Register Supported (V2) : 1"), std::string::npos) << facp;
  EXPECT_NE(facp.find("Value to cause reset : 01"), std::string::npos) << facp;
  const std::string apic = squeeze(disassemble("apic", t.madt.bytes).dsl);
  size_t lapics = 0;
  for (size_t at = 0; (at = apic.find("Processor Local APIC]", at)) != std::string::npos; ++at)
    ++lapics;
  EXPECT_EQ(lapics, 4u) << apic;
  EXPECT_NE(apic.find("Address : FEC00000"), std::string::npos) << apic;
}

TEST_F(AcpiIasl, DsdtListsEveryVirtioDeviceWithItsWindowAndInterrupt) {
  const MachineDescription m = four_cpus_three_disks();
  const Disassembly d = disassemble("dsdt", build_tables(m).dsdt.bytes);
  const std::string dsl = squeeze(d.dsl);
  EXPECT_NE(dsl.find("Name (_HID, EisaId (\"PNP0501\") )"), std::string::npos) << d.dsl;
  EXPECT_NE(dsl.find("IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08, )"), std::string::npos) << d.dsl;
  EXPECT_NE(dsl.find("IRQNoFlags () {4}"), std::string::npos) << d.dsl;
  EXPECT_NE(dsl.find("Name (\\_S5, Package (0x04) { 0x05, Zero, Zero, Zero })"), std::string::npos)
      << d.dsl;
  for (size_t i = 0; i < m.virtio.size(); ++i) {
    char want[512];
    std::snprintf(want, sizeof(want),
                  "Device (VR%02zX) { Name (_HID, \"LNRO0005\") Name (_UID, %s) Name (_CRS, "
                  "ResourceTemplate () { Memory32Fixed (ReadWrite, 0x%08llX, 0x00001000, ) "
                  "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x%08X, } })",
                  i,
                  i == 0   ? "Zero"
                  : i == 1 ? "One"
                           : ("0x0" + std::to_string(i)).c_str(),
                  static_cast<unsigned long long>(m.virtio[i].base), m.virtio[i].irq);
    EXPECT_NE(dsl.find(want), std::string::npos) << want << "\n" << d.dsl;
  }
}

}  // namespace
}  // namespace kiln::acpi
