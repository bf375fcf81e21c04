// A host TAP device for virtio-net: /dev/net/tun attached to (or creating) interface NAME with
// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, non-blocking, with a 12-byte virtio_net_hdr_v1 in front of
// every frame both ways. Offloads (TUNSETOFFLOAD: what the TAP may hand us) are probed at open
// and set to what the guest negotiated.
#pragma once

#include <sys/uio.h>

#include <string>

#include "base/unique_fd.h"

namespace kiln::virtio {

class Tap {
 public:
  static constexpr int kVnetHdrSize = 12;  // struct virtio_net_hdr_v1 (VIRTIO_F_VERSION_1)

  // Throws kiln::UsageError naming the TAP and what to do: no /dev/net/tun, no CAP_NET_ADMIN,
  // busy (opened by another process), not a TAP, no IFF_VNET_HDR support.
  explicit Tap(const std::string& name);

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  // TUN_F_* bits the TAP accepted when probed at open.
  unsigned supported_offloads() const { return supported_offloads_; }
  // TUNSETOFFLOAD; false (errno set) if the TAP refuses.
  bool set_offloads(unsigned tun_flags);

  // One frame (virtio-net header first). readv: bytes read, 0 when none is waiting, -1 on error.
  ssize_t read_frame(const iovec* iov, int count);
  ssize_t write_frame(const iovec* iov, int count);

 private:
  std::string name_;
  UniqueFd fd_;
  unsigned supported_offloads_ = 0;
};

}  // namespace kiln::virtio
