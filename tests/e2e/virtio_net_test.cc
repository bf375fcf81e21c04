// End-to-end virtio-net: the virtio_net test guest on a TAP in a network namespace made by the
// test. The guest resolves the host's MAC (ARP), pings it (ICMP echo), and echoes a UDP
// datagram the host sends it, so frames go both ways through the real kernel's IP stack.
// A TAP that cannot be opened stops `kiln` before boot with exit status 2.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "devices/virtio/net/tap.h"
#include "tests/e2e/api_client.h"
#include "tests/e2e/kiln_process.h"
#include "tests/support/net_namespace.h"

namespace kiln::e2e {
namespace {

constexpr const char* kTap = "kilnnet0";

bool has_line(const std::string& out, const std::string& line) {
  std::istringstream in(out);
  std::string l;
  while (std::getline(in, l))
    if (l == line) return true;
  return false;
}

// Sends `data` from 192.168.77.1 to the guest's UDP port 7777; returns what comes back.
std::string udp_round_trip(const std::string& data, int timeout_seconds) {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(7777);
  ::inet_pton(AF_INET, "192.168.77.2", &to.sin_addr);
  timeval tv{timeout_seconds, 0};
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string reply;
  if (::sendto(s, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) ==
      static_cast<ssize_t>(data.size())) {
    char buf[1500];
    const ssize_t n = ::recv(s, buf, sizeof(buf), 0);
    if (n > 0) reply.assign(buf, static_cast<size_t>(n));
  }
  ::close(s);
  return reply;
}

TEST(VirtioNetGuest, ExchangesArpIcmpAndUdpWithTheHost) {
  KILN_REQUIRE_KVM();
  std::string out, err, reply;
  int exit_code = -1;
  const std::string why = testsupport::in_new_netns([&] {
    testsupport::make_persistent_tap(kTap);
    testsupport::set_ipv4_24(kTap, "192.168.77.1");
    testsupport::bring_up_quiet(kTap);
    KilnProcess kiln({"run", "--kernel", guest_path("virtio_net"), "--net",
                      std::string("tap=") + kTap + ",mac=52:54:00:12:34:56,id=eth0"});
    for (int i = 0; i < 1800 && kiln.out().find("VNET ready") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (kiln.out().find("VNET ready") != std::string::npos)
      reply = udp_round_trip("hello from the host", 60);
    exit_code = kiln.wait(120);
    out = kiln.out();
    err = kiln.err();
  });
  if (!why.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << why;
  const KilnRun r{exit_code, false, out, err};
  EXPECT_EQ(reply, "hello from the host") << describe(r);
  ASSERT_EQ(exit_code, 0) << describe(r);
  for (const std::string line :
       {"VNET mac=52:54:00:12:34:56 status=1 irq=5",
        "VNET echo-reply from=192.168.77.1 seq=1 checksum=ok", "VNET ready", "VNET done"})
    EXPECT_TRUE(has_line(out, line)) << line << "\n" << describe(r);
  EXPECT_NE(out.find("VNET arp-reply ip=192.168.77.1 mac="), std::string::npos) << describe(r);
  EXPECT_NE(out.find(" len=19 data=hello from the host\n"), std::string::npos) << describe(r);
  EXPECT_NE(out.find("VNET udp from=192.168.77.1:"), std::string::npos) << describe(r);
  const size_t irqs = out.find("VNET irqs=");
  ASSERT_NE(irqs, std::string::npos) << describe(r);
  EXPECT_GE(std::stoi(out.substr(irqs + 10)), 1) << describe(r);
}

// Errors come before /dev/kvm is opened, so these run everywhere.
TEST(VirtioNetErrors, BusyTapStopsKilnBeforeBoot) {
  KilnRun r;
  const std::string why = testsupport::in_new_netns([&] {
    virtio::Tap holder("kilnbusy0");  // the TAP is taken (single queue: one user)
    r = run_kiln({"run", "--kernel", guest_path("hello"), "--net", "tap=kilnbusy0"});
  });
  if (!why.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << why;
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("TAP kilnbusy0: busy"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("KILN-GUEST"), std::string::npos) << describe(r);  // never booted
}

TEST(VirtioNetErrors, NotATapStopsKilnBeforeBoot) {
  KilnRun r;
  const std::string why = testsupport::in_new_netns([&] {
    r = run_kiln({"run", "--kernel", guest_path("hello"), "--net", "tap=lo"});
  });
  if (!why.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN for a network namespace: " << why;
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("TAP lo: exists but is not a TAP"), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("KILN-GUEST"), std::string::npos) << describe(r);
}

TEST(VirtioNetErrors, BadFlagsNameTheFlagAndField) {
  const std::string kernel = guest_path("hello");
  struct Case {
    std::string value, message;
  } cases[] = {
      {"tap=bad/name", "--net tap=bad/name: tap: \"bad/name\" is not a valid interface name"},
      {"tap=t0,mac=zz", "--net tap=t0,mac=zz: mac: \"zz\" is not a MAC"},
      {"tap=t0,mac=01:00:00:00:00:01", "mac: 01:00:00:00:00:01 is not a unicast address"},
      {"mac=52:54:00:00:00:01", "--net mac=52:54:00:00:00:01: tap=NAME is required"},
      {"tap=t0,speed=10", "--net tap=t0,speed=10: unknown option 'speed'"},
      {"tap=t0,id=a-b", "--net tap=t0,id=a-b: id: must be 1 to 64 letters"},
  };
  for (const Case& c : cases) {
    KilnRun r = run_kiln({"run", "--kernel", kernel, "--net", c.value});
    EXPECT_EQ(r.exit_code, 2) << c.value << "\n" << describe(r);
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.value << "\n" << describe(r);
  }
  KilnRun dup = run_kiln({"run", "--kernel", kernel, "--net", "tap=t0", "--net", "tap=t0"});
  EXPECT_EQ(dup.exit_code, 2) << describe(dup);
  EXPECT_NE(dup.err.find("TAP t0 is already used by interface \"net0\""), std::string::npos)
      << describe(dup);
}

TEST(VirtioNetErrors, ConfigFileNetworkInterfacesAreChecked) {
  TempFile json("{\"boot-source\": {\"kernel_image_path\": \"" + guest_path("hello") +
                "\"}, \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": "
                "\"t0\", \"guest_mac\": \"52:54:00:00:00:01\", \"rx_rate_limiter\": {}}, "
                "{\"iface_id\": \"eth1\", \"host_dev_name\": \"t1\", \"guest_mac\": "
                "\"52:54:00:00:00:01\"}]}");
  KilnRun r = run_kiln({"--config-file", json.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("network-interfaces[1]: guest_mac: The MAC address is already in use: "
                       "52:54:00:00:00:01"),
            std::string::npos)
      << describe(r);
  TempFile toml("[boot-source]\nkernel_image_path = \"" + guest_path("hello") +
                "\"\n[[network-interfaces]]\niface_id = \"eth0\"\nhost_dev_name = \"t0\"\n"
                "mtu = 20\n");
  r = run_kiln({"run", "--config", toml.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(toml.path() + ":6"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("mtu: must be between 68 and 65535"), std::string::npos) << describe(r);
}

}  // namespace
}  // namespace kiln::e2e
