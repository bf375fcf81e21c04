// virtio-vsock wire format (virtio 1.2, section 5.10): the 44-byte packet header that starts
// every buffer on the rx and tx queues, its operations, and the device's constants.
#pragma once

#include <cstdint>

namespace kiln::virtio::vsock {

// Little-endian on the wire; x86-64 hosts only, so plain fields.
struct __attribute__((packed)) PacketHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;  // payload bytes after the header
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;  // sender's receive buffer for this connection
  uint32_t fwd_cnt;    // bytes the sender has consumed from it so far (free-running)
};
static_assert(sizeof(PacketHeader) == 44);

inline constexpr uint64_t kHostCid = 2;
inline constexpr uint16_t kTypeStream = 1;

enum Op : uint16_t {
  kOpInvalid = 0,
  kOpRequest = 1,
  kOpResponse = 2,
  kOpRst = 3,
  kOpShutdown = 4,
  kOpRw = 5,
  kOpCreditUpdate = 6,
  kOpCreditRequest = 7,
};

// SHUTDOWN flags: the sender will receive / send no more data.
inline constexpr uint32_t kShutdownRcv = 1;
inline constexpr uint32_t kShutdownSend = 2;

// Event queue: virtio_vsock_event.id.
inline constexpr uint32_t kEventTransportReset = 0;

// Queues.
inline constexpr size_t kRxQueue = 0;
inline constexpr size_t kTxQueue = 1;
inline constexpr size_t kEventQueue = 2;

// Kiln's side of every connection: the receive buffer it advertises (bytes from the guest not
// yet written to the host socket), when it volunteers a CREDIT_UPDATE, and the largest payload
// it puts in one rx packet.
inline constexpr uint32_t kBufAlloc = 256 * 1024;
inline constexpr uint32_t kCreditUpdateThreshold = 64 * 1024;
inline constexpr uint32_t kMaxRxPayload = 64 * 1024;
// Host-initiated connections use local ports from here up (as Firecracker).
inline constexpr uint32_t kFirstEphemeralPort = 1u << 30;
inline constexpr size_t kMaxConnections = 1024;

// A stream packet header from (src_cid, src_port) to (dst_cid, dst_port); len 0, no flags.
inline PacketHeader stream_header(uint16_t op, uint64_t src_cid, uint32_t src_port,
                                  uint64_t dst_cid, uint32_t dst_port, uint32_t buf_alloc,
                                  uint32_t fwd_cnt) {
  PacketHeader h{};
  h.src_cid = src_cid;
  h.dst_cid = dst_cid;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.type = kTypeStream;
  h.op = op;
  h.buf_alloc = buf_alloc;
  h.fwd_cnt = fwd_cnt;
  return h;
}

}  // namespace kiln::virtio::vsock
