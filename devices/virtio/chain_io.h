// Byte-stream views of a validated descriptor chain: its device-readable part and its
// device-writable part, each addressed from offset 0. All access goes through GuestMemory.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "devices/virtio/queue.h"
#include "base/guest_memory.h"

namespace kiln::virtio {

// Appends host iovecs covering [offset, offset+len) of the readable (writable == false) or
// writable part of `chain`. False if the range runs past that part or leaves guest memory.
bool chain_iovecs(const GuestMemory& mem, const DescriptorChain& chain, bool writable,
                  uint64_t offset, uint64_t len, std::vector<iovec>& out);

// Copies out of the readable part / into the writable part at `offset`.
bool chain_read(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                std::span<uint8_t> out);
bool chain_write(const GuestMemory& mem, const DescriptorChain& chain, uint64_t offset,
                 std::span<const uint8_t> in);

}  // namespace kiln::virtio
