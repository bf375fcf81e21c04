#include "devices/virtio/chain_io.h"

#include <algorithm>
#include <cstring>

namespace kiln::virtio {

namespace {

// Calls fn(host span) for each piece of [offset, offset+len) of one part of the chain. The
// buffers' host views were bounds-checked when the chain was popped; offsets stay inside them.
template <typename Fn>
bool for_each_piece(const DescriptorChain& chain, bool writable, uint64_t offset, uint64_t len,
                    Fn fn) {
  for (const ChainBuffer& b : chain.buffers) {
    if (len == 0) break;
    if (b.device_writable != writable) continue;
    if (offset >= b.len) {
      offset -= b.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.len - offset, len);
    fn(std::span<uint8_t>(b.host + offset, n));
    len -= n;
    offset = 0;
  }
  return len == 0;
}

}  // namespace

bool chain_iovecs(const GuestMemory& /*mem*/, const DescriptorChain& chain, bool writable,
                  uint64_t offset, uint64_t len, std::vector<iovec>& out) {
  return for_each_piece(chain, writable, offset, len, [&](std::span<uint8_t> piece) {
    out.push_back({piece.data(), piece.size()});
  });
}

bool chain_read(const GuestMemory& /*mem*/, const DescriptorChain& chain, uint64_t offset,
                std::span<uint8_t> out) {
  uint8_t* dst = out.data();
  return for_each_piece(chain, false, offset, out.size(), [&](std::span<uint8_t> piece) {
    std::memcpy(dst, piece.data(), piece.size());
    dst += piece.size();
  });
}

bool chain_write(const GuestMemory& /*mem*/, const DescriptorChain& chain, uint64_t offset,
                 std::span<const uint8_t> in) {
  const uint8_t* src = in.data();
  return for_each_piece(chain, true, offset, in.size(), [&](std::span<uint8_t> piece) {
    std::memcpy(piece.data(), src, piece.size());
    src += piece.size();
  });
}

}  // namespace kiln::virtio
