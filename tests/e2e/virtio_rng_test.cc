// End-to-end virtio-rng: the rng test guest reads entropy through its own virtio driver.
#include <gtest/gtest.h>

#include <chrono>
#include <regex>

#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

struct RngReport {
  std::string first;  // hex of the first 32 bytes
  uint64_t bytes = 0, distinct = 0, requests = 0, short_reads = 0, irqs = 0;
};

bool parse_report(const std::string& out, RngReport& r) {
  static const std::regex line(
      "RNG first=([0-9a-f]{64}) bytes=(\\d+) distinct=(\\d+) requests=(\\d+) short=(\\d+) "
      "irqs=(\\d+)");
  std::smatch m;
  if (!std::regex_search(out, m, line)) return false;
  r.first = m[1];
  r.bytes = std::stoull(m[2]);
  r.distinct = std::stoull(m[3]);
  r.requests = std::stoull(m[4]);
  r.short_reads = std::stoull(m[5]);
  r.irqs = std::stoull(m[6]);
  return true;
}

TEST(VirtioRngGuest, ReadsFreshEntropyEveryBoot) {
  KILN_REQUIRE_KVM();
  RngReport a, b;
  for (RngReport* r : {&a, &b}) {
    KilnRun run = run_kiln({"run", "--kernel", guest_path("rng"), "--rng"});
    ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
    ASSERT_TRUE(parse_report(run.out, *r)) << run.out;
  }
  EXPECT_EQ(a.bytes, 4096u);
  EXPECT_EQ(a.requests, 4u);
  EXPECT_EQ(a.short_reads, 0u);
  EXPECT_GT(a.distinct, 200u);  // 4 KiB of random bytes hit nearly every value
  EXPECT_GT(a.irqs, 0u);
  EXPECT_NE(a.first, b.first);
}

TEST(VirtioRngGuest, NoDeviceWithoutTheFlag) {
  KILN_REQUIRE_KVM();
  KilnRun run = run_kiln({"run", "--kernel", guest_path("rng")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("RNG no device"), std::string::npos) << run.out;
}

TEST(VirtioRngGuest, RateLimitHoldsTheGuestBack) {
  KILN_REQUIRE_KVM();
  // 12 KiB at 4 KiB/s with a full 4 KiB bucket at start cannot finish in under 2 s.
  const auto start = std::chrono::steady_clock::now();
  KilnRun run = run_kiln({"run", "--kernel", guest_path("rng"), "--rng=4096", "--cmdline",
                          "console=ttyS0 rng_total=12288"});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  RngReport r;
  ASSERT_TRUE(parse_report(run.out, r)) << run.out;
  EXPECT_EQ(r.bytes, 12288u);
  EXPECT_GT(r.short_reads, 0u);  // requests were cut to what the bucket held
  EXPECT_GE(elapsed, std::chrono::seconds(2));
}

TEST(VirtioRngFlags, BadRateIsAUsageError) {
  for (const char* bad : {"--rng=0", "--rng=fast", "--rng=-5"}) {
    KilnRun run = run_kiln({"run", "--kernel", guest_path("rng"), bad});
    EXPECT_EQ(run.exit_code, 2) << bad;
    EXPECT_NE(run.err.find("--rng"), std::string::npos) << run.err;
  }
}

}  // namespace
}  // namespace kiln::e2e
