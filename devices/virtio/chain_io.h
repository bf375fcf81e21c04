// Byte-stream views of a validated descriptor chain: its device-readable part and its
// device-writable part, each addressed from offset 0. They use the buffers' host views, which
// Queue::pop resolved and bounds-checked (`mem` is the memory the chain was popped from).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/guest_memory.h"
#include "devices/virtio/queue.h"

namespace kiln::virtio {

// Appends host iovecs covering [offset, offset+len) of the readable (writable == false) or
// writable part of `chain`. False if the range runs past that part.
bool chain_iovecs(const GuestMemory& mem, const DescriptorChain& chain, bool writable,
                  uint64_t offset, uint64_t len, std::vector<iovec>& out);

// Copies out of the readable part / into the writable part at `offset`.
bool chain_read(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                std::span<uint8_t> out);
bool chain_write(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                 std::span<const uint8_t> in);

// File I/O straight on a chain's iovecs (zero copy): preadv/pwritev of `fd` at `offset` until
// `iov` is done, end of file (a read) or an error. `iov` is consumed (advanced in place: the
// caller's scratch vector, so nothing is copied per request). Returns the bytes moved, or
// -errno when nothing moved.
int64_t file_transfer(int fd, bool write, std::vector<iovec>& iov, uint64_t offset);

}  // namespace kiln::virtio
