// End-to-end: several vCPUs. The smp guest (tests/guests/smp.c) reads Kiln's MP table and
// starts every AP it lists with INIT/SIPI through the in-kernel LAPIC; each AP reports the APIC
// id CPUID gives it. Also: a reset or triple fault on an AP stops the whole VM.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>

#include "arch/x86_64/mptable.h"
#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// Values of `key=<number>` on lines starting with `prefix`, in order.
std::vector<int> numbers_after(const std::string& text, const std::string& prefix) {
  std::vector<int> values;
  for (const std::string& line : lines_of(text))
    if (line.rfind(prefix, 0) == 0) values.push_back(std::stoi(line.substr(prefix.size())));
  return values;
}

class SmpBoot : public ::testing::TestWithParam<int> {};

TEST_P(SmpBoot, MpTableListsEveryVcpuAndEachApStartsOnce) {
  KILN_REQUIRE_KVM();
  const int cpus = GetParam();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("smp"), "--cpus", std::to_string(cpus)});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(numbers_after(r.out, "mptable cpus="), std::vector<int>{cpus}) << describe(r);
  std::vector<int> listed = numbers_after(r.out, "mptable cpu apic_id=");
  std::vector<int> expected_ids(cpus);
  for (int i = 0; i < cpus; ++i) expected_ids[i] = i;
  EXPECT_EQ(listed, expected_ids) << describe(r);
  EXPECT_NE(r.out.find("mptable cpu apic_id=0 bsp\n"), std::string::npos) << describe(r);
  EXPECT_EQ(numbers_after(r.out, "bsp apic_id="), std::vector<int>{0}) << describe(r);

  std::map<int, int> reports;  // APIC id -> times reported
  for (int id : numbers_after(r.out, "ap apic_id=")) ++reports[id];
  std::map<int, int> once;
  for (int id = 1; id < cpus; ++id) once[id] = 1;
  EXPECT_EQ(reports, once) << describe(r);
  EXPECT_NE(r.out.find("smp ok cpus=" + std::to_string(cpus) + "\n"), std::string::npos)
      << describe(r);
}

INSTANTIATE_TEST_SUITE_P(Cpus, SmpBoot, ::testing::Values(1, 2, 4, 16));

TEST(Smp, ResetFromAnApStopsEveryVcpu) {
  KILN_REQUIRE_KVM();
  // The last AP to start resets through the i8042 while the BSP spins and two APs are halted.
  KilnRun r = run_kiln(
      {"run", "--kernel", guest_path("smp"), "--cpus", "4", "--cmdline", "smp.ap_action=reset"}, {},
      180);
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("smp ap_action=reset\n"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("smp ok"), std::string::npos) << describe(r);
}

TEST(Smp, TripleFaultOnAnApStopsEveryVcpu) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("smp"), "--cpus", "3", "--cmdline",
                        "smp.ap_action=triplefault"},
                       {}, 180);
  EXPECT_FALSE(r.timed_out) << describe(r);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_TRUE(std::regex_search(r.err, std::regex("vCPU [12]: guest triple fault"))) << describe(r);
}

TEST(Smp, MoreVcpusThanTheMpTableDescribesIsRefusedBeforeBoot) {
  // Runs everywhere: the MP table is written (and the count checked) before /dev/kvm opens.
  const std::string too_many = std::to_string(x86::kMpTableMaxCpus + 1);
  KilnRun r = run_kiln({"run", "--kernel", guest_path("smp"), "--cpus", too_many});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("--cpus " + too_many + ": the MP table"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace kiln::e2e
