// Network helpers for virtio-net tests and the net benchmark: run code in a fresh network
// namespace (so TAPs made there touch nothing on the host), bring an interface up, and a raw
// AF_PACKET socket bound to a TAP to play the host side of the wire.
//
// A thread that unshares its network namespace takes only itself along; fds made there (TAPs,
// sockets) keep that namespace alive and work from any thread.
//
// Header-only so that both tests/ and bench/ can use it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kiln::testsupport {

// Runs `fn` on a new thread inside a new network namespace and waits for it. Returns "" or, if
// the namespace cannot be made (no CAP_SYS_ADMIN/CAP_NET_ADMIN), why. Exceptions from `fn`
// are rethrown here.
inline std::string in_new_netns(const std::function<void()>& fn) {
  std::string error;
  std::exception_ptr exception;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      error = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    try {
      fn();
    } catch (...) {
      exception = std::current_exception();
    }
  });
  t.join();
  if (exception) std::rethrow_exception(exception);
  return error;
}

// Sets a file under /proc/sys (net/ entries belong to the calling thread's namespace). Throws on
// failure.
inline void write_sysctl(const std::string& path, const std::string& value) {
  const int fd = ::open(("/proc/sys/" + path).c_str(), O_WRONLY | O_CLOEXEC);
  const bool ok =
      fd >= 0 && ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("cannot write /proc/sys/" + path);
}

// Brings interface `name` up (in the calling thread's namespace), with IPv6 off so the kernel
// sends nothing on it by itself (no router solicitations, no MLD). Throws on failure.
inline void bring_up_quiet(const std::string& name) {
  write_sysctl("net/ipv6/conf/" + name + "/disable_ipv6", "1");
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw std::runtime_error("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP;
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  ::close(s);
  if (!ok) throw std::runtime_error("cannot bring " + name + " up: " + std::strerror(errno));
}

// Creates a persistent TAP `name` (it lives until deleted or its namespace goes), as
// `ip tuntap add dev NAME mode tap` does. Throws on failure.
inline void make_persistent_tap(const std::string& name) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  const bool ok =
      fd >= 0 && ::ioctl(fd, TUNSETIFF, &ifr) == 0 && ::ioctl(fd, TUNSETPERSIST, 1) == 0;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("cannot make TAP " + name + ": " + std::strerror(err));
}

// Gives interface `name` the IPv4 address `addr` with a /24 netmask. Throws on failure.
inline void set_ipv4_24(const std::string& name, const std::string& addr) {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  ::inet_pton(AF_INET, addr.c_str(), &sin->sin_addr);
  bool ok = s >= 0 && ::ioctl(s, SIOCSIFADDR, &ifr) == 0;
  ::inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
  ok = ok && ::ioctl(s, SIOCSIFNETMASK, &ifr) == 0;
  const int err = errno;
  if (s >= 0) ::close(s);
  if (!ok)
    throw std::runtime_error("cannot set " + addr + " on " + name + ": " + std::strerror(err));
}

// A raw AF_PACKET socket bound to one interface: sends whole Ethernet frames out of it (into a
// TAP: the VMM reads them) and receives the frames arriving on it (written to a TAP by the VMM).
class PacketSocket {
 public:
  // Create in the interface's namespace.
  explicit PacketSocket(const std::string& ifname) {
    fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
    ifindex_ = static_cast<int>(::if_nametoindex(ifname.c_str()));
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = ifindex_;
    if (ifindex_ == 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      throw std::runtime_error("bind AF_PACKET to " + ifname);
    }
    int big = 4 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  }
  ~PacketSocket() { ::close(fd_); }
  PacketSocket(const PacketSocket&) = delete;
  PacketSocket& operator=(const PacketSocket&) = delete;

  int fd() const { return fd_; }
  // Sends one frame; throws on failure.
  void send(const std::vector<uint8_t>& frame) const {
    if (::send(fd_, frame.data(), frame.size(), 0) != static_cast<ssize_t>(frame.size()))
      throw std::runtime_error(std::string("AF_PACKET send: ") + std::strerror(errno));
  }
  // The next frame arriving on the interface (not our own outgoing ones), waiting up to
  // `timeout_ms`; nullopt on timeout.
  std::optional<std::vector<uint8_t>> receive(int timeout_ms = 1000) const {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
      std::vector<uint8_t> frame(70000);
      sockaddr_ll from{};
      socklen_t len = sizeof(from);
      const ssize_t n =
          ::recvfrom(fd_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) return std::nullopt;
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      frame.resize(static_cast<size_t>(n));
      return frame;
    }
  }

 private:
  int fd_ = -1;
  int ifindex_ = 0;
};

// An Ethernet frame: dst, src, ethertype, then `payload_len` bytes of a pattern from `seed`.
inline std::vector<uint8_t> test_frame(const uint8_t (&dst)[6], const uint8_t (&src)[6],
                                       size_t payload_len, uint8_t seed = 1) {
  std::vector<uint8_t> f(14 + payload_len);
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x88;  // 0x88b5: IEEE local experimental ethertype
  f[13] = 0xb5;
  for (size_t i = 0; i < payload_len; ++i) f[14 + i] = static_cast<uint8_t>(seed + i * 13);
  return f;
}

}  // namespace kiln::testsupport
