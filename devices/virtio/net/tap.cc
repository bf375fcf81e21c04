#include "devices/virtio/net/tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace kiln::virtio {

namespace {

constexpr const char* kCreateHint =
    "run Kiln as root, or create the TAP beforehand for this user: "
    "ip tuntap add dev {} mode tap user $(id -un)";

std::string hint(const std::string& name) {
  std::string h = kCreateHint;
  h.replace(h.find("{}"), 2, name);
  return h;
}

}  // namespace

Tap::Tap(const std::string& name) : name_(name) {
  auto fail = [&](const std::string& why) { return UsageError("TAP " + name_ + ": " + why); };
  if (name.empty() || name.size() >= IFNAMSIZ) throw fail("not a valid interface name");
  fd_.reset(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd_) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      throw fail("open /dev/net/tun: " + std::string(std::strerror(err)) +
                 " (load the tun module: modprobe tun)");
    if (err == EACCES || err == EPERM)
      throw fail("open /dev/net/tun: " + std::string(std::strerror(err)) +
                 " (no CAP_NET_ADMIN or no access to the device; " + hint(name_) + ")");
    throw fail(errno_message("open /dev/net/tun", err));
  }
  unsigned features = 0;
  if (::ioctl(fd_.get(), TUNGETFEATURES, &features) < 0 || !(features & IFF_VNET_HDR))
    throw fail("this kernel's TUN driver has no IFF_VNET_HDR");

  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd_.get(), TUNSETIFF, &ifr) < 0) {
    const int err = errno;
    switch (err) {
      case EPERM:
      case EACCES:
        throw fail("no CAP_NET_ADMIN to create or attach it (" + hint(name_) + ")");
      case EBUSY:
        throw fail("busy: another process has it open (stop it or use another TAP)");
      case EINVAL:
        throw fail("exists but is not a TAP device (a TUN device or another kind of interface)");
      default:
        throw fail(errno_message("TUNSETIFF", err));
    }
  }
  int hdr_size = kVnetHdrSize;
  if (::ioctl(fd_.get(), TUNSETVNETHDRSZ, &hdr_size) < 0)
    throw fail(errno_message("TUNSETVNETHDRSZ 12"));
  // Strongest offload set first; TSO needs checksum offload.
  constexpr unsigned kTry[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO,
                               TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM};
  for (unsigned flags : kTry) {
    if (set_offloads(flags)) {
      supported_offloads_ = flags;
      break;
    }
  }
  if (!set_offloads(0)) throw fail(errno_message("TUNSETOFFLOAD 0"));
}

bool Tap::set_offloads(unsigned tun_flags) {
  return ::ioctl(fd_.get(), TUNSETOFFLOAD, tun_flags) == 0;
}

ssize_t Tap::read_frame(const iovec* iov, int count) {
  for (;;) {
    const ssize_t n = ::readv(fd_.get(), iov, count);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return -1;
  }
}

ssize_t Tap::write_frame(const iovec* iov, int count) {
  for (;;) {
    const ssize_t n = ::writev(fd_.get(), iov, count);
    if (n >= 0 || errno != EINTR) return n;
  }
}

}  // namespace kiln::virtio
