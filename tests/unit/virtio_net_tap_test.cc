// Opening a TAP: every way it can fail gives a UsageError naming the TAP and what to do.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/syscall.h>

#include <thread>

#include "base/error.h"
#include "devices/virtio/net/net_device.h"
#include "devices/virtio/net/tap.h"
#include "tests/support/net_namespace.h"

namespace kiln::virtio {
namespace {

// The UsageError message of `fn`, or "" if it did not throw one.
template <typename Fn>
std::string usage_error(Fn fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

#define SKIP_WITHOUT_NETNS(why) \
  if (!(why).empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << (why)

TEST(TapTest, OpensWithVnetHeaderAndProbesOffloads) {
  std::unique_ptr<Tap> tap;
  const std::string why = testsupport::in_new_netns([&] { tap = std::make_unique<Tap>("kt0"); });
  SKIP_WITHOUT_NETNS(why);
  EXPECT_GE(tap->fd(), 0);
  EXPECT_EQ(tap->name(), "kt0");
  EXPECT_NE(tap->supported_offloads() & 1u, 0u);  // TUN_F_CSUM on any recent kernel
}

TEST(TapTest, BusyTapIsRefused) {
  std::string msg;
  const std::string why = testsupport::in_new_netns([&] {
    Tap first("kt0");
    msg = usage_error([] { Tap second("kt0"); });
  });
  SKIP_WITHOUT_NETNS(why);
  EXPECT_NE(msg.find("TAP kt0: busy"), std::string::npos) << msg;
}

TEST(TapTest, AnInterfaceThatIsNotATapIsRefused) {
  std::string msg;
  const std::string why =
      testsupport::in_new_netns([&] { msg = usage_error([] { Tap tap("lo"); }); });
  SKIP_WITHOUT_NETNS(why);
  EXPECT_NE(msg.find("TAP lo: exists but is not a TAP"), std::string::npos) << msg;
}

TEST(TapTest, BadNameIsRefused) {
  EXPECT_NE(usage_error([] { Tap tap("a-name-far-too-long-for-linux"); }).find("not a valid"),
            std::string::npos);
  EXPECT_NE(usage_error([] { Tap tap(""); }).find("not a valid"), std::string::npos);
}

TEST(TapTest, WithoutCapNetAdminTheMessageSaysSo) {
  std::string msg, drop_error;
  const std::string why = testsupport::in_new_netns([&] {
    // Capabilities are per thread: drop CAP_NET_ADMIN in a helper thread only.
    std::thread t([&] {
      __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct data[2]{};
      if (::syscall(SYS_capget, &hdr, data) != 0) {
        drop_error = "capget failed";
        return;
      }
      data[0].effective &= ~(1u << CAP_NET_ADMIN);
      if (::syscall(SYS_capset, &hdr, data) != 0) {
        drop_error = "capset failed";
        return;
      }
      msg = usage_error([] { NetDevice net(NetOptions{"kt9", {}, {}}); });
    });
    t.join();
  });
  SKIP_WITHOUT_NETNS(why);
  ASSERT_EQ(drop_error, "");
  EXPECT_NE(msg.find("TAP kt9: no CAP_NET_ADMIN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ip tuntap add dev kt9 mode tap"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kiln::virtio
