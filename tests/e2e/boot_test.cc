// End-to-end: `kiln run` with the freestanding test guests (tests/guests/). Each test fails when
// the VMM gets the thing it names wrong. Tests that run a guest need /dev/kvm and are skipped,
// saying why, where it cannot be opened; the input-validation tests run everywhere.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "tests/e2e/e820.h"
#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

// The first line of `text` that starts with `prefix`, without the prefix ("" if none).
std::string line_after(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  }
  return "";
}

uint64_t fnv1a64(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen());
  return s;
}

// ---- Guests that run (need KVM) ----

class GuestBoot : public ::testing::TestWithParam<const char*> {};

TEST_P(GuestBoot, HelloPrintsAndResetExitsZero) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("hello", GetParam())});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("Hello from a Kiln test guest"), std::string::npos) << describe(r);
}

// --log-level holds after the VM starts: the guest's reset is logged at info level only.
TEST_P(GuestBoot, LogLevelFlagStillAppliesOnceTheVmRuns) {
  KILN_REQUIRE_KVM();
  KilnRun info =
      run_kiln({"--log-level", "info", "run", "--kernel", guest_path("hello", GetParam())});
  ASSERT_EQ(info.exit_code, 0) << describe(info);
  EXPECT_NE(info.err.find("kiln: info: "), std::string::npos) << describe(info);
  KilnRun quiet = run_kiln({"run", "--kernel", guest_path("hello", GetParam())});
  ASSERT_EQ(quiet.exit_code, 0) << describe(quiet);
  EXPECT_EQ(quiet.err.find("kiln: info: "), std::string::npos) << describe(quiet);
}

TEST_P(GuestBoot, CommandLineArrivesIntact) {
  KILN_REQUIRE_KVM();
  const std::string cmdline = "console=ttyS0 kiln.test=\"two words\" x=1,2,3 end=%$&";
  KilnRun r =
      run_kiln({"run", "--kernel", guest_path("cmdline", GetParam()), "--cmdline", cmdline});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(line_after(r.out, "CMDLINE:"), cmdline) << describe(r);
}

INSTANTIATE_TEST_SUITE_P(ElfAndBzImage, GuestBoot, ::testing::Values(".elf", ".bzimage"),
                         [](const auto& info) { return std::string(info.param + 1); });

void expect_e820_matches(uint64_t memory_mib) {
  KilnRun r =
      run_kiln({"run", "--kernel", guest_path("e820"), "--memory", std::to_string(memory_mib)});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  auto entries = parse_e820(r.out);
  ASSERT_FALSE(entries.empty()) << describe(r);
  EXPECT_EQ(line_after(r.out, "E820-END "), std::to_string(entries.size()));
  const uint64_t memory = memory_mib << 20;
  const uint64_t legacy_hole = 0x100000 - 0x9fc00;  // EBDA + VGA + BIOS area
  uint64_t ram = 0, top = 0;
  for (const E820Entry& e : entries) {
    if (e.type != 1) continue;
    ram += e.size;
    top = std::max(top, e.addr + e.size);
    // No RAM inside the 32-bit MMIO hole.
    EXPECT_TRUE(e.addr + e.size <= 0xc0000000ull || e.addr >= 0x100000000ull) << describe(r);
  }
  EXPECT_EQ(ram, memory - legacy_hole) << describe(r);
  const uint64_t expected_top = memory <= 0xc0000000ull ? memory : memory + 0x40000000ull;
  EXPECT_EQ(top, expected_top) << describe(r);
}

TEST(GuestE820, RamMatchesMemoryFlag) {
  KILN_REQUIRE_KVM();
  expect_e820_matches(256);
}

TEST(GuestE820, RamAboveFourGiBWhenMemoryExceedsTheHole) {
  KILN_REQUIRE_KVM();
  expect_e820_matches(3072 + 512);  // 3.5 GiB: 3 GiB low + 512 MiB from 4 GiB
}

TEST(GuestInitrd, ArrivesByteIdentical) {
  KILN_REQUIRE_KVM();
  const std::string data = random_bytes(3 * 1024 * 1024 + 123, 42);
  TempFile initrd(data);
  KilnRun r = run_kiln({"run", "--kernel", guest_path("initrd"), "--initrd", initrd.path()});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string line = line_after(r.out, "INITRD ");
  char expected[64];
  std::snprintf(expected, sizeof(expected), "size=%zu fnv1a64=%016llx", data.size(),
                static_cast<unsigned long long>(fnv1a64(data)));
  EXPECT_NE(line.find(expected), std::string::npos) << "expected " << expected << "\n"
                                                    << describe(r);
  // Page-aligned, inside the default 128 MiB of RAM.
  const uint64_t addr = std::stoull(line_after(r.out, "INITRD addr="), nullptr, 16);
  EXPECT_EQ(addr % 4096, 0u);
  EXPECT_LE(addr + data.size(), 128ull << 20);
}

TEST(GuestRngSeed, ArrivesAndDiffersPerBoot) {
  KILN_REQUIRE_KVM();
  KilnRun a = run_kiln({"run", "--kernel", guest_path("rngseed")});
  KilnRun b = run_kiln({"run", "--kernel", guest_path("rngseed")});
  ASSERT_EQ(a.exit_code, 0) << describe(a);
  ASSERT_EQ(b.exit_code, 0) << describe(b);
  const std::string seed_a = line_after(a.out, "RNGSEED len=32 data=");
  const std::string seed_b = line_after(b.out, "RNGSEED len=32 data=");
  ASSERT_EQ(seed_a.size(), 64u) << describe(a);
  EXPECT_NE(seed_a, std::string(64, '0'));
  EXPECT_NE(seed_a, seed_b);
}

TEST(GuestSerial, InputReachesTheGuest) {
  KILN_REQUIRE_KVM();
  KilnInput input{"READY", "hello kiln\n", false};
  KilnRun r = run_kiln({"run", "--kernel", guest_path("serial_in")}, input);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(line_after(r.out, "GOT:"), "hello kiln") << describe(r);
}

TEST(GuestTimer, InterruptsArrive) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("timer")});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string ticks = line_after(r.out, "TIMER ticks=");
  ASSERT_FALSE(ticks.empty()) << describe(r);
  EXPECT_GE(std::stoi(ticks), 20);
}

TEST(GuestRing3, HundredMillionIterationsComplete) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("ring3loop")});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("RING3 cpl=3 iterations=100000000 done"), std::string::npos) << describe(r);
}

TEST(GuestTripleFault, ExitsNonZeroWithReason) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("triplefault")});
  EXPECT_NE(r.out.find("TRIPLEFAULT now"), std::string::npos) << describe(r);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("triple fault"), std::string::npos) << describe(r);
}

TEST(GuestConsole, EscapeSequenceStopsKiln) {
  KILN_REQUIRE_KVM();
  KilnInput input{"READY", "\x01x", false};
  KilnRun r = run_kiln({"run", "--kernel", guest_path("serial_in")}, input);
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE(r.err.find("Ctrl-A x"), std::string::npos) << describe(r);
}

// ---- Bad input: refused before any VM exists (run everywhere) ----

void expect_usage_error(const KilnRun& r, const std::vector<std::string>& words) {
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  for (const std::string& w : words)
    EXPECT_NE(r.err.find(w), std::string::npos) << w << "\n" << describe(r);
}

TEST(BadInput, MissingKernelFile) {
  expect_usage_error(run_kiln({"run", "--kernel", "/nonexistent/vmlinux"}),
                     {"/nonexistent/vmlinux"});
}

TEST(BadInput, KernelThatIsNotAnImage) {
  TempFile junk(std::string(8192, 'j'));
  expect_usage_error(run_kiln({"run", "--kernel", junk.path()}), {junk.path(), "bad magic"});
}

TEST(BadInput, TruncatedElfAndBzImage) {
  for (const char* kind : {".elf", ".bzimage"}) {
    std::ifstream f(guest_path("hello", kind), std::ios::binary);
    std::string head(700, '\0');
    f.read(head.data(), static_cast<std::streamsize>(head.size()));
    TempFile cut(head);
    expect_usage_error(run_kiln({"run", "--kernel", cut.path()}), {cut.path(), "truncated"});
  }
}

TEST(BadInput, CommandLineLongerThanTheKernelAccepts) {
  const std::string long_cmdline(5000, 'a');
  expect_usage_error(
      run_kiln({"run", "--kernel", guest_path("hello", ".bzimage"), "--cmdline", long_cmdline}),
      {"command line", "2047"});
}

TEST(BadInput, InitrdThatDoesNotFit) {
  TempFile initrd(std::string(20u << 20, 'i'));
  expect_usage_error(run_kiln({"run", "--kernel", guest_path("hello"), "--memory", "16", "--initrd",
                               initrd.path()}),
                     {initrd.path(), "does not fit"});
}

TEST(BadInput, BadFlagValues) {
  expect_usage_error(run_kiln({"run", "--kernel", guest_path("hello"), "--cpus", "0"}), {"--cpus"});
  expect_usage_error(run_kiln({"run", "--kernel", guest_path("hello"), "--memory", "lots"}),
                     {"--memory"});
  expect_usage_error(run_kiln({"run"}), {"--kernel"});
  expect_usage_error(run_kiln({"run", "--kernel", guest_path("hello"), "--bogus"}), {"--bogus"});
}

TEST(Cli, VersionAndHelp) {
  KilnRun v = run_kiln({"--version"});
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("kiln 0.1.0"), std::string::npos) << describe(v);
  KilnRun h = run_kiln({"run", "--help"});
  EXPECT_EQ(h.exit_code, 0);
  for (const char* word : {"--kernel", "--initrd", "--cmdline", "--cpus", "--memory", "Ctrl-A"})
    EXPECT_NE(h.out.find(word), std::string::npos) << word;
}

}  // namespace
}  // namespace kiln::e2e
