#include "agent/network.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "base/unique_fd.h"

namespace kiln::agent {

namespace {

[[noreturn]] void fail(const std::string& what, int err = errno) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

UniqueFd inet_socket() {
  UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) fail("socket for the network");
  return s;
}

ifreq request_for(const char* dev) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  return ifr;
}

void set_up(int s, const char* dev) {
  ifreq ifr = request_for(dev);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail(std::string("SIOCGIFFLAGS ") + dev);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail(std::string("SIOCSIFFLAGS ") + dev);
}

sockaddr ipv4(const std::string& a) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  if (inet_pton(AF_INET, a.c_str(), &in.sin_addr) != 1)
    throw std::runtime_error("'" + a + "' is not an IPv4 address");
  sockaddr out;
  static_assert(sizeof in <= sizeof out);
  std::memcpy(&out, &in, sizeof in);
  return out;
}

sockaddr netmask(int prefix) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix));
  sockaddr out;
  std::memcpy(&out, &in, sizeof in);
  return out;
}

}  // namespace

void bring_up_lo() {
  UniqueFd s = inet_socket();
  set_up(s.get(), "lo");
}

namespace {

// The interface whose MAC is `mac` (lower case), waiting up to 5 s for it to appear.
std::string find_by_mac(const std::string& mac) {
  for (int i = 0; i < 500; ++i, usleep(10000)) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(opendir("/sys/class/net"), closedir);
    if (!d) continue;
    while (dirent* e = readdir(d.get())) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(std::string("/sys/class/net/") + e->d_name + "/address");
      std::string address;
      if (std::getline(f, address) && address == mac) return e->d_name;
    }
  }
  throw std::runtime_error("kiln.net: no interface with MAC " + mac + " after 5 s");
}

void rename_link(int s, const std::string& from, const std::string& to) {
  ifreq ifr = request_for(from.c_str());
  std::strncpy(ifr.ifr_newname, to.c_str(), IFNAMSIZ - 1);
  if (ioctl(s, SIOCSIFNAME, &ifr) < 0) fail("rename " + from + " to " + to);
}

}  // namespace

void change_mac(const MacChange& c) {
  std::string name = find_by_mac(c.from);
  UniqueFd s = inet_socket();
  ifreq ifr = request_for(name.c_str());
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  for (int i = 0; i < 6; ++i)
    ifr.ifr_hwaddr.sa_data[i] =
        static_cast<char>(std::stoul(c.to.substr(static_cast<size_t>(i) * 3, 2), nullptr, 16));
  if (ioctl(s.get(), SIOCSIFHWADDR, &ifr) < 0) fail("set " + name + "'s MAC to " + c.to);
}

void configure_link(const Network& n) {
  UniqueFd s = inet_socket();
  std::string name = "eth0";
  if (n.mac.empty()) {
    for (int i = 0; access("/sys/class/net/eth0", F_OK) < 0; ++i) {
      if (i == 500)
        throw std::runtime_error(
            "kiln.net: no eth0 after 5 s (does the VM have a network device?)");
      usleep(10000);
    }
  } else {
    name = n.name;
    std::string now = find_by_mac(n.mac);
    if (now != name) {
      // Another interface holds the name: it moves aside (its own kiln.net renames it).
      if (access(("/sys/class/net/" + name).c_str(), F_OK) == 0)
        rename_link(s.get(), name, "kiln" + std::to_string(if_nametoindex(name.c_str())));
      rename_link(s.get(), now, name);
    }
  }
  const char* dev = name.c_str();
  ifreq ifr = request_for(dev);
  if (n.mtu) {
    ifr.ifr_mtu = static_cast<int>(n.mtu);
    if (ioctl(s.get(), SIOCSIFMTU, &ifr) < 0)
      fail("set " + name + "'s MTU to " + std::to_string(n.mtu));
  }
  ifr = request_for(dev);
  ifr.ifr_addr = ipv4(n.address);
  if (ioctl(s.get(), SIOCSIFADDR, &ifr) < 0) fail("set " + name + "'s address " + n.address);
  ifr = request_for(dev);
  ifr.ifr_netmask = netmask(n.prefix);
  if (ioctl(s.get(), SIOCSIFNETMASK, &ifr) < 0)
    fail("set " + name + "'s prefix /" + std::to_string(n.prefix));
  set_up(s.get(), dev);
  if (n.gateway.empty()) return;
  rtentry rt{};
  rt.rt_dst = ipv4("0.0.0.0");
  rt.rt_genmask = netmask(0);
  rt.rt_gateway = ipv4(n.gateway);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  char route_dev[IFNAMSIZ] = {};
  std::strncpy(route_dev, dev, IFNAMSIZ - 1);
  rt.rt_dev = route_dev;
  if (ioctl(s.get(), SIOCADDRT, &rt) < 0) fail("add the default route via " + n.gateway);
}

void install_resolv_conf(const std::vector<std::string>& servers) {
  if (mkdir("/run/kiln", 0755) < 0 && errno != EEXIST) fail("mkdir /run/kiln");
  {
    std::ofstream f("/run/kiln/resolv.conf");
    for (const auto& a : servers) f << "nameserver " << a << "\n";
    if (!f) fail("write /run/kiln/resolv.conf");
  }
  chmod("/run/kiln/resolv.conf", 0644);
  UniqueFd target(open("/etc/resolv.conf", O_RDONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!target) fail("create /etc/resolv.conf for kiln.dns (does the root have /etc?)");
  if (mount("/run/kiln/resolv.conf", "/etc/resolv.conf", nullptr, MS_BIND, nullptr) < 0)
    fail("bind-mount /etc/resolv.conf");
}

}  // namespace kiln::agent
