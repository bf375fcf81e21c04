#include "devices/virtio/chain_io.h"

#include <algorithm>
#include <cstring>

namespace kiln::virtio {

bool chain_iovecs(const GuestMemory& mem, const DescriptorChain& chain, bool writable,
                  uint64_t offset, uint64_t len, std::vector<iovec>& out) {
  for (const ChainBuffer& b : chain.buffers) {
    if (len == 0) break;
    if (b.device_writable != writable) continue;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.len - offset, len);
    auto host = mem.slice(b.addr + offset, n);
    if (!host) return false;
    out.push_back({host->data(), n});
    len -= n;
    offset = 0;
  }
  return len == 0;
}

bool chain_read(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                std::span<uint8_t> out) {
  std::vector<iovec> iov;
  if (!chain_iovecs(mem, chain, false, offset, out.size(), iov)) return false;
  uint8_t* dst = out.data();
  for (const iovec& v : iov) {
    std::memcpy(dst, v.iov_base, v.iov_len);
    dst += v.iov_len;
  }
  return true;
}

bool chain_write(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                 std::span<const uint8_t> in) {
  std::vector<iovec> iov;
  if (!chain_iovecs(mem, chain, true, offset, in.size(), iov)) return false;
  const uint8_t* src = in.data();
  for (const iovec& v : iov) {
    std::memcpy(v.iov_base, src, v.iov_len);
    src += v.iov_len;
  }
  return true;
}

}  // namespace kiln::virtio
