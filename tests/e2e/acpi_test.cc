// End-to-end ACPI: the acpi test guest reads Kiln's tables as an OS would (RSDP from boot_params
// and from the 0xe0000 scan, checksums, MADT, DSDT devices) and powers off or resets through the
// FADT's registers; `kiln` must exit 0 with the matching reason.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

std::vector<std::string> lines(const std::string& out) {
  std::vector<std::string> v;
  std::istringstream in(out);
  std::string l;
  while (std::getline(in, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    v.push_back(l);
  }
  return v;
}

bool has_line(const std::string& out, const std::string& line) {
  for (const std::string& l : lines(out))
    if (l == line) return true;
  return false;
}

// "virtio-mmio uid=<i> base=0x.. size=0x.. irq=<n> edge active-high" for each
// virtio_mmio.device=<size>@<base>:<irq> Kiln put on the command line the guest printed.
std::vector<std::string> expected_virtio_lines(const std::string& out) {
  std::string cmdline;
  for (const std::string& l : lines(out))
    if (l.rfind("CMDLINE:", 0) == 0) cmdline = l.substr(8);
  std::vector<std::string> want;
  const std::regex dev(R"(virtio_mmio\.device=(\d+)([KM]?)@0x([0-9a-f]+):(\d+))");
  for (std::sregex_iterator it(cmdline.begin(), cmdline.end(), dev), end; it != end; ++it) {
    const std::smatch& m = *it;
    uint64_t size = std::stoull(m[1]);
    if (m[2] == "K") size <<= 10;
    if (m[2] == "M") size <<= 20;
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  "virtio-mmio uid=%zu base=0x%s size=0x%llx irq=%s edge active-high", want.size(),
                  m[3].str().c_str(), static_cast<unsigned long long>(size), m[4].str().c_str());
    want.push_back(buf);
  }
  return want;
}

std::vector<std::string> printed_virtio_lines(const std::string& out) {
  std::vector<std::string> v;
  for (const std::string& l : lines(out))
    if (l.rfind("virtio-mmio ", 0) == 0) v.push_back(l);
  return v;
}

// Logs at info level through the config file's [logger], so stderr names why the VM stopped.
std::string info_log_toml(const std::string& kernel) {
  return "[boot-source]\nkernel_image_path = \"" + kernel + "\"\n[logger]\nlevel = \"Info\"\n";
}

TEST(AcpiGuest, TablesDescribeCpusAndDevicesAndPowerOffExitsZero) {
  KILN_REQUIRE_KVM();
  TempFile info_log(info_log_toml(guest_path("acpi")));
  TempFile d0(std::string(64 << 10, 'a')), d1(std::string(64 << 10, 'b')),
      d2(std::string(64 << 10, 'c'));
  KilnRun r =
      run_kiln({"run", "--config", info_log.path(), "--kernel", guest_path("acpi"), "--cpus", "3",
                "--disk", d0.path(), "--disk", d1.path() + ",ro", "--disk", d2.path()});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  for (const char* line : {
           "ACPI rsdp=0xe0000",
           "ACPI rsdp-scan=0xe0000",
           "ACPI rsdp revision=2 checksum=ok ext-checksum=ok",
           "FADT revision=6.5 flags=0x00100430",
           "MADT lapic-addr=0xfee00000 flags=1",
           "MADT apic-ids=0,1,2",
           "MADT cpus=3",
           "MADT ioapic id=0 addr=0xfec00000 gsi-base=0",
           "MADT override irq=4 gsi=4 flags=0x5",
           "DSDT device COM1 hid=PNP0501 uid=0 io=0x3f8 len=8 irq=4",
           "DSDT virtio-devices=3 s5=5",
           "ACPI done errors=0",
           "ACPI poweroff port=0x600 value=0x34",
       })
    EXPECT_TRUE(has_line(r.out, line)) << line << "\n" << describe(r);
  // Every table the guest found (XSDT, FACP, APIC, DSDT) sums to zero.
  int tables = 0;
  for (const std::string& l : lines(r.out)) {
    if (l.rfind("ACPI table ", 0) != 0) continue;
    ++tables;
    EXPECT_NE(l.find(" checksum=ok"), std::string::npos) << l;
  }
  EXPECT_EQ(tables, 4) << describe(r);

  // The DSDT lists each device with the window and IRQ Kiln announced on the command line.
  const std::vector<std::string> want = expected_virtio_lines(r.out);
  ASSERT_EQ(want.size(), 3u) << describe(r);
  EXPECT_EQ(want[0], "virtio-mmio uid=0 base=0xd0000000 size=0x1000 irq=5 edge active-high");
  EXPECT_EQ(printed_virtio_lines(r.out), want) << describe(r);

  EXPECT_NE(r.err.find("guest powered off (ACPI S5)"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("ACPI still running"), std::string::npos) << describe(r);
}

class AcpiGuestKinds : public ::testing::TestWithParam<const char*> {};

TEST_P(AcpiGuestKinds, ResetRegisterWriteExitsZero) {
  KILN_REQUIRE_KVM();
  TempFile info_log(info_log_toml(guest_path("acpi", GetParam())));
  KilnRun r =
      run_kiln({"run", "--config", info_log.path(), "--kernel", guest_path("acpi", GetParam()),
                "--cmdline", "console=ttyS0 acpi_test=reset"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(has_line(r.out, "MADT cpus=1")) << describe(r);
  EXPECT_TRUE(has_line(r.out, "DSDT virtio-devices=0 s5=5")) << describe(r);
  EXPECT_TRUE(has_line(r.out, "ACPI done errors=0")) << describe(r);
  EXPECT_TRUE(has_line(r.out, "ACPI reset port=0x602 value=0x1")) << describe(r);
  EXPECT_NE(r.err.find("guest reset (ACPI)"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("ACPI still running"), std::string::npos) << describe(r);
}

INSTANTIATE_TEST_SUITE_P(ElfAndBzImage, AcpiGuestKinds, ::testing::Values(".elf", ".bzimage"),
                         [](const auto& info) { return std::string(info.param + 1); });

}  // namespace
}  // namespace kiln::e2e
