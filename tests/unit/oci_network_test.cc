// oci/network.cc against the kernel: a network namespace made as an engine makes one (a veth
// with an address and a default route), read, connected to a TAP with tc, disconnected.
// Needs root (namespaces, TAPs) and the tc modules; skipped, saying so, without them.
#include "oci/network.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::oci {
namespace {

std::string output_of(const std::string& command) {
  std::string text;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((command + " 2>&1").c_str(), "r"), pclose);
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p.get())) > 0) text.append(buf, n);
  return text;
}

bool run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

class EngineNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, TAPs)";
    name_ = "kiln-nettest-" + std::to_string(getpid());
    if (!run("ip netns add " + name_)) GTEST_SKIP() << "cannot make a network namespace here";
    made_ = true;
    const std::string ip = "ip -n " + name_ + " ";
    if (!run(ip + "link add eth0 mtu 1400 address 02:11:22:33:44:55 type veth peer name peer0") ||
        !run(ip + "addr add 10.89.0.7/16 dev eth0") ||
        !run(ip + "addr add 10.90.0.7/24 dev eth0") || !run(ip + "link set eth0 up") ||
        !run(ip + "link set peer0 up") || !run(ip + "route add default via 10.89.0.1") ||
        !run(ip + "route add 192.168.50.0/24 via 10.89.0.254"))
      GTEST_SKIP() << "cannot make a veth pair here";
    path_ = "/run/netns/" + name_;
  }
  void TearDown() override {
    if (made_) run("ip netns del " + name_);
  }
  std::string name_, path_;
  bool made_ = false;
};

// This thread in the namespace for the scope (setns moves only the calling thread).
struct InNetns {
  explicit InNetns(const std::string& path) : home(open("/proc/thread-self/ns/net", O_RDONLY)) {
    enter_netns(path);
  }
  ~InNetns() { setns(home.get(), CLONE_NEWNET); }
  UniqueFd home;
};

TEST_F(EngineNetns, ReadsTheEnginesInterface) {
  InNetns in(path_);
  std::vector<EngineLink> links = engine_links();
  ASSERT_EQ(links.size(), 2u);  // the veth's two ends; lo is left out
  const EngineLink& l = links[0].name == "eth0" ? links[0] : links[1];
  EXPECT_EQ(l.name, "eth0");
  EXPECT_EQ(l.mac, "02:11:22:33:44:55");
  EXPECT_EQ(l.mtu, 1400u);
  EXPECT_EQ(l.address, "10.89.0.7");
  EXPECT_EQ(l.prefix, 16);
  EXPECT_EQ(l.gateway, "10.89.0.1");
  // The second address and the extra route are what the guest will not have, said so.
  ASSERT_EQ(l.left_out.size(), 2u);
  EXPECT_EQ(l.left_out[0], "address 10.90.0.7/24");
  EXPECT_EQ(l.left_out[1], "route 192.168.50.0/24 via 10.89.0.254");

  sandbox::SandboxNet n = guest_net(l, tap_name(0));
  EXPECT_EQ(n.vm_args(),
            (std::vector<std::string>{"--net", "tap=tap0_kiln,mac=02:11:22:33:44:55"}));
  EXPECT_EQ(n.cmdline(),
            " kiln.net=10.89.0.7/16,gw=10.89.0.1,mtu=1400,mac=02:11:22:33:44:55,name=eth0");
}

TEST_F(EngineNetns, RedirectsBothWaysAndCleansUp) {
  EngineLink l;
  {
    InNetns in(path_);
    for (const auto& found : engine_links())
      if (found.name == "eth0") l = found;
    ASSERT_EQ(l.name, "eth0");
    try {
      connect_tap(l, tap_name(0));
    } catch (const kiln::Error& e) {
      GTEST_SKIP() << e.what();  // no sch_ingress, cls_u32 or act_mirred here
    }
    connect_tap(l, tap_name(0));  // again: what the first left is replaced
  }
  const std::string tc = "tc -n " + name_ + " filter show dev ";
  std::string from_link = output_of(tc + "eth0 ingress");
  std::string from_tap = output_of(tc + tap_name(0) + " ingress");
  EXPECT_NE(from_link.find("u32"), std::string::npos) << from_link;
  EXPECT_NE(from_link.find("Redirect to device tap0_kiln"), std::string::npos) << from_link;
  EXPECT_NE(from_tap.find("Redirect to device eth0"), std::string::npos) << from_tap;
  std::string tap = output_of("ip -n " + name_ + " -d link show " + tap_name(0));
  EXPECT_NE(tap.find("mtu 1400"), std::string::npos) << tap;
  EXPECT_NE(tap.find("tun type tap"), std::string::npos) << tap;
  EXPECT_NE(tap.find("persist"), std::string::npos) << tap;

  // disconnect_tap in a child in the namespace, as kiln-oci delete does; a second is no error.
  ASSERT_TRUE(in_netns(path_, [] { disconnect_tap("eth0", tap_name(0)); }));
  ASSERT_TRUE(in_netns(path_, [] { disconnect_tap("eth0", tap_name(0)); }));
  EXPECT_EQ(output_of(tc + "eth0 ingress"), "");
  EXPECT_NE(output_of("ip -n " + name_ + " link show " + tap_name(0)).find("does not exist"),
            std::string::npos);
}

TEST(EngineNetnsGone, ANamespaceThatIsGoneIsNotEntered) {
  EXPECT_FALSE(in_netns("/run/netns/kiln-no-such-namespace", [] {}));
}

TEST(EngineNetnsGone, AChildsErrorComesBack) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (setns)";
  try {
    in_netns("/proc/self/ns/net", [] { throw kiln::Error("the body's reason"); });
    FAIL() << "no error";
  } catch (const kiln::Error& e) {
    EXPECT_STREQ(e.what(), "the body's reason");
  }
}

}  // namespace
}  // namespace kiln::oci
