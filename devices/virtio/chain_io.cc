#include "devices/virtio/chain_io.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
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

int64_t file_transfer(int fd, bool write, std::vector<iovec>& iov, uint64_t offset) {
  size_t first = 0;
  int64_t done = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const off_t off = static_cast<off_t>(offset);
    const iovec& v = iov[first];
    // One buffer (a 4 KiB request, typically): plain pread/pwrite, cheaper in the kernel.
    const ssize_t n = count == 1 ? (write ? ::pwrite(fd, v.iov_base, v.iov_len, off)
                                          : ::pread(fd, v.iov_base, v.iov_len, off))
                                 : (write ? ::pwritev(fd, &iov[first], count, off)
                                          : ::preadv(fd, &iov[first], count, off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return done > 0 ? done : -errno;
    if (n == 0) break;
    done += n;
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return done;
}

}  // namespace kiln::virtio
