// Warm sandboxes' host side (sandbox/warm.h): the restore's command line and the configure a
// restored agent gets (the host's clock, fresh entropy each time).
#include "sandbox/warm.h"

#include "sandbox/network.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/support/test_files.h"

namespace kiln::sandbox {
namespace {

TEST(SandboxWarm, RestoreArgsGiveEachShareAndTheSocketTheSandboxsPaths) {
  std::vector<Share> shares{{"kiln-root", "/srv/root", true}, {"kiln-v0", "/data", false}};
  EXPECT_EQ(warm_restore_args({"/c/state", "/c/memory", UniqueFd()}, "/run/s/vsock", shares,
                              {"tap3"}, ""),
            (std::vector<std::string>{"kiln", "--restore", "/c/state", "--mem", "/c/memory",
                                      "--vsock-override", "/run/s/vsock", "--fs-override",
                                      "share0=/srv/root", "--fs-override", "share1=/data",
                                      "--net-override", "net0=tap3"}));
  auto with_api = warm_restore_args({"s", "m", UniqueFd()}, "v", {}, {}, "/run/s/api.sock");
  EXPECT_EQ(with_api.back(), "/run/s/api.sock");
  EXPECT_EQ(with_api[with_api.size() - 2], "--api-sock");
}

// The cache keeps the snapshots used last, those a sandbox holds (a shared lock), the one just
// made and any being made.
TEST(SandboxWarm, PruneDropsTheLeastRecentlyUsedUnheldEntries) {
  test::TempDir root;
  namespace fs = std::filesystem;
  auto make = [&](const std::string& name, int age_s) {
    fs::create_directory(root.path() + "/" + name);
    std::ofstream(root.path() + "/" + name + "/state") << "s";
    fs::last_write_time(root.path() + "/" + name + "/state",
                        fs::file_time_type::clock::now() - std::chrono::seconds(age_s));
  };
  for (int i = 0; i < 6; ++i) make("e" + std::to_string(i), 100 * (i + 1));  // e5 is oldest
  make("new", 1000);
  make("x.new", 1000);  // being made by another process
  UniqueFd held(open((root.path() + "/e5.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(held);
  ASSERT_EQ(flock(held.get(), LOCK_SH), 0);
  prune_warm_cache(root.path(), "new", 3);
  std::set<std::string> left;
  for (const auto& e : fs::directory_iterator(root.path()))
    if (e.is_directory()) left.insert(e.path().filename().string());
  // e0, e1 newest kept (with "new": 3); e5 held; x.new being made; e2..e4 gone.
  EXPECT_EQ(left, (std::set<std::string>{"e0", "e1", "e5", "new", "x.new"}));
  EXPECT_TRUE(fs::exists(root.path() + "/e3.lock"));  // lock files stay
}

TEST(SandboxWarm, PoolMacsAreDistinctAndLocallyAdministered) {
  EXPECT_EQ(warm_pool_mac(0), "02:4b:69:6c:6e:00");
  EXPECT_EQ(warm_pool_mac(7), "02:4b:69:6c:6e:07");
  std::string a = random_mac(), b = random_mac();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 17u);
  unsigned first = static_cast<unsigned>(std::stoul(a.substr(0, 2), nullptr, 16));
  EXPECT_EQ(first & 0x03, 0x02u);  // unicast, locally administered
}

TEST(SandboxWarm, ConfigureCarriesTheClockAndFreshEntropy) {
  auto now = [] {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  };
  uint64_t before = now();
  agent::Configure a = warm_configure(" kiln.root=kiln-root"), b = warm_configure("x");
  EXPECT_EQ(a.params, " kiln.root=kiln-root");
  EXPECT_GE(a.realtime_ns, before);
  EXPECT_LE(a.realtime_ns, now());
  EXPECT_EQ(a.entropy.size(), 64u);
  EXPECT_LE(a.entropy.size(), agent::kMaxEntropy);
  EXPECT_NE(a.entropy, b.entropy);
  EXPECT_NE(a.entropy, std::vector<uint8_t>(64, 0));
}

}  // namespace
}  // namespace kiln::sandbox
