// End-to-end: guest RAM backed as machine-config "huge_pages" / `--huge-pages` says.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>

#include "tests/e2e/api_client.h"
#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

constexpr uint64_t k2MiB = 2ull << 20;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A /proc/meminfo value ("HugePages_Free"), -1 if missing.
long meminfo(const std::string& key) {
  std::smatch m;
  const std::string text = read_file("/proc/meminfo");
  if (!std::regex_search(text, m, std::regex("(^|\n)" + key + ":\\s+(\\d+)"))) return -1;
  return std::stol(m[2]);
}

struct Vma {
  uint64_t start = 0, size = 0;
  std::string details;  // the smaps lines after the header
};

// The one mapping of exactly `size` bytes in /proc/PID/smaps: guest RAM.
std::optional<Vma> mapping_of_size(int pid, uint64_t size) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/smaps"));
  std::optional<Vma> found, current;
  std::string line;
  while (std::getline(in, line)) {
    // A header ("7f..-7f.. rw-p ...") starts a mapping; the lines after it ("Rss:  4 kB")
    // describe it.
    unsigned long a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &a, &b) == 2 && line.find(':') > line.find(' ')) {
      if (current && current->size == size) found = current;
      current = Vma{a, b - a, ""};
    } else if (current) {
      current->details += line + "\n";
    }
  }
  if (current && current->size == size) found = current;
  return found;
}

long smaps_kib(const Vma& v, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(v.details, m, std::regex("(^|\n)" + key + ":\\s+(\\d+)"))) return -1;
  return std::stol(m[2]);
}

TEST(HugePages, TransparentBacksGuestRamWithHugePages) {
  KILN_REQUIRE_KVM();
  const std::string thp = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
  if (thp.empty() || thp.find("[never]") != std::string::npos)
    GTEST_SKIP() << "transparent huge pages are off on this host: '" << thp << "'";
  KilnProcess kiln(
      {"run", "--kernel", guest_path("idle"), "--memory", "128", "--huge-pages", "Transparent"});
  ASSERT_TRUE(kiln.wait_for_output("KILN-GUEST idle", 120)) << kiln.out() << kiln.err();
  auto ram = mapping_of_size(kiln.pid(), 128ull << 20);
  ASSERT_TRUE(ram) << "no 128 MiB mapping in kiln's smaps";
  EXPECT_EQ(ram->start % k2MiB, 0u) << std::hex << ram->start;
  EXPECT_EQ(smaps_kib(*ram, "THPeligible"), 1) << ram->details;
  // The guest was loaded and ran: the 2 MiB it touched came as huge pages.
  EXPECT_GE(smaps_kib(*ram, "AnonHugePages"), 2048) << ram->details;
}

TEST(HugePages, TwoMiBPagesWithoutAReserveFailSayingWhatToDo) {
  const long free_pages = meminfo("HugePages_Free");
  if (free_pages < 0) GTEST_SKIP() << "no hugetlbfs on this host";
  if (free_pages >= 64) GTEST_SKIP() << free_pages << " free 2 MiB pages: the mapping would work";
  KilnRun r =
      run_kiln({"run", "--kernel", guest_path("hello"), "--memory", "128", "--huge-pages", "2M"});
  // A host that cannot provide the VM: exit 1, as without /dev/kvm, saying what to do.
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_NE(r.err.find("nr_hugepages"), std::string::npos) << describe(r);
}

TEST(HugePages, BadFlagValuesNameTheProblem) {
  KilnRun bad = run_kiln({"run", "--kernel", guest_path("hello"), "--huge-pages", "1G"});
  EXPECT_EQ(bad.exit_code, 2) << describe(bad);
  EXPECT_NE(bad.err.find("--huge-pages"), std::string::npos) << describe(bad);
  EXPECT_NE(bad.err.find("None, Transparent, 2M"), std::string::npos) << describe(bad);
  KilnRun odd =
      run_kiln({"run", "--kernel", guest_path("hello"), "--huge-pages", "2M", "--memory", "129"});
  EXPECT_EQ(odd.exit_code, 2) << describe(odd);
  EXPECT_NE(odd.err.find("multiple of 2"), std::string::npos) << describe(odd);
}

}  // namespace
}  // namespace kiln::e2e
