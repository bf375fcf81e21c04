// kiln sandbox run --net: the flag's parsing, and what it hands kiln run and the agent.
#include "sandbox/network.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace kiln::sandbox {
namespace {

TEST(SandboxNet, EveryKeyReachesKilnRunOrTheAgent) {
  SandboxNet n = parse_net(
      "tap=kt0,mac=52:54:00:00:00:02,ip=10.7.0.2/24,gw=10.7.0.1,mtu=1400,"
      "dns=10.7.0.1,dns=1.1.1.1");
  EXPECT_EQ(n.vm_args(), (std::vector<std::string>{"--net", "tap=kt0,mac=52:54:00:00:00:02"}));
  EXPECT_EQ(n.cmdline(), " kiln.net=10.7.0.2/24,gw=10.7.0.1,mtu=1400 kiln.dns=10.7.0.1,1.1.1.1");
  SandboxNet bare = parse_net("tap=kt0");
  EXPECT_EQ(bare.vm_args(), (std::vector<std::string>{"--net", "tap=kt0"}));
  EXPECT_EQ(bare.cmdline(), "");  // eth0 is the workload's to configure
  EXPECT_EQ(parse_net("tap=t,ip=10.0.0.9/32").cmdline(), " kiln.net=10.0.0.9/32");
}

TEST(SandboxNet, BadValuesNameTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"ip=1.2.3.4/8", "tap=NAME is required"},
      {"tap=", "tap="},
      {"tap=0123456789abcdef", "tap="},
      {"tap=a/b", "tap="},
      {"tap=t,ip=1.2.3.4", "ip="},
      {"tap=t,ip=1.2.3/24", "ip="},
      {"tap=t,ip=1.2.3.4/33", "ip="},
      {"tap=t,ip=1.2.3.4/24,gw=x", "gw="},
      {"tap=t,ip=1.2.3.4/24,mtu=67", "mtu="},
      {"tap=t,ip=1.2.3.4/24,mtu=65536", "mtu="},
      {"tap=t,gw=1.1.1.1", "need ip="},
      {"tap=t,dns=a", "dns="},
      {"tap=t,dns=1.1.1.1,dns=1.1.1.2,dns=1.1.1.3,dns=1.1.1.4", "at most 3"},
      {"tap=t,x", "KEY=VALUE"},
      {"tap=t,speed=1", "unknown key 'speed'"},
  };
  for (const auto& [value, want] : cases) {
    try {
      parse_net(value);
      ADD_FAILURE() << "accepted " << value;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--net"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << value << ": " << e.what();
    }
  }
}

}  // namespace
}  // namespace kiln::sandbox
