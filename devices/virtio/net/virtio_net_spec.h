// Constants of the virtio-net device (virtio 1.x, section 5.1) shared by the device, its tests
// and the benchmark.
#pragma once

#include <cstdint>

namespace kiln::virtio::net {

// Feature bits.
inline constexpr uint32_t kFCsum = 0;       // device takes partially checksummed TX frames
inline constexpr uint32_t kFGuestCsum = 1;  // driver takes partially checksummed RX frames
inline constexpr uint32_t kFMtu = 3;
inline constexpr uint32_t kFMac = 5;
inline constexpr uint32_t kFGuestTso4 = 7;
inline constexpr uint32_t kFGuestTso6 = 8;
inline constexpr uint32_t kFGuestUfo = 10;
inline constexpr uint32_t kFHostTso4 = 11;
inline constexpr uint32_t kFHostTso6 = 12;
inline constexpr uint32_t kFMrgRxbuf = 15;
inline constexpr uint32_t kFStatus = 16;

inline constexpr uint16_t kStatusLinkUp = 1;

// Configuration space offsets.
inline constexpr uint64_t kConfigMac = 0;
inline constexpr uint64_t kConfigStatus = 6;
inline constexpr uint64_t kConfigMaxPairs = 8;
inline constexpr uint64_t kConfigMtu = 10;
inline constexpr uint64_t kConfigSize = 12;

// struct virtio_net_hdr_v1: in front of every frame, both ways.
struct NetHeader {
  uint8_t flags;  // 1: NEEDS_CSUM, 2: DATA_VALID
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(NetHeader) == 12);
inline constexpr uint64_t kNumBuffersOffset = 10;

inline constexpr uint8_t kHdrFNeedsCsum = 1;
inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpv4 = 1;
inline constexpr uint8_t kGsoTcpv6 = 4;

// Largest frame after the header: a 64 KiB GSO frame with its Ethernet (and a VLAN) header.
inline constexpr uint32_t kMaxFrame = 65535 + 14 + 4;

}  // namespace kiln::virtio::net
