// Constants of the virtio-blk device (virtio 1.2, section 5.2) and Kiln's advertised limits,
// shared by the device, its tests and the benchmark.
#pragma once

#include <cstdint>

namespace kiln::virtio::blk {

// Feature bits.
inline constexpr uint32_t kFSizeMax = 1;
inline constexpr uint32_t kFSegMax = 2;
inline constexpr uint32_t kFRo = 5;
inline constexpr uint32_t kFBlkSize = 6;
inline constexpr uint32_t kFFlush = 9;
inline constexpr uint32_t kFDiscard = 13;
inline constexpr uint32_t kFWriteZeroes = 14;

// Request types.
inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;

// Status byte values.
inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupported = 2;

// Configuration space (struct virtio_blk_config) offsets.
inline constexpr uint64_t kConfigCapacity = 0;  // le64, 512-byte sectors
inline constexpr uint64_t kConfigSizeMax = 8;
inline constexpr uint64_t kConfigSegMax = 12;
inline constexpr uint64_t kConfigBlkSize = 20;
inline constexpr uint64_t kConfigNumQueues = 34;  // le16
inline constexpr uint64_t kConfigMaxDiscardSectors = 36;
inline constexpr uint64_t kConfigMaxDiscardSeg = 40;
inline constexpr uint64_t kConfigDiscardSectorAlignment = 44;
inline constexpr uint64_t kConfigMaxWriteZeroesSectors = 48;
inline constexpr uint64_t kConfigMaxWriteZeroesSeg = 52;
inline constexpr uint64_t kConfigWriteZeroesMayUnmap = 56;  // u8
inline constexpr uint64_t kConfigSize = 60;

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kWriteZeroesUnmap = 1;  // DiscardSegment::flags

// In front of every request (device-readable).
struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
// The data of DISCARD and WRITE_ZEROES: one (max_*_seg is 1) of these.
struct DiscardSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(RequestHeader) == 16 && sizeof(DiscardSegment) == 16);

// Kiln's limits, advertised in the config space and enforced per request (a request over them
// fails with IOERR; the device keeps working). They bound the synchronous work one request
// does on the event loop:
// - size_max: bytes of data in one descriptor; seg_max: data descriptors in one request (a
//   chain of the largest queue, 256, holds header and status besides). IN/OUT therefore move
//   at most kMaxRequestBytes = 254 * 128 KiB (31.75 MiB) per request.
// - max_discard_sectors: 256 MiB per DISCARD (a hole punch, never a write).
// - max_write_zeroes_sectors: 16 MiB per WRITE_ZEROES, which is also what the write loop writes
//   at most when the file system cannot zero a range with fallocate.
inline constexpr uint32_t kSizeMax = 128 * 1024;
inline constexpr uint32_t kSegMax = 254;
inline constexpr uint64_t kMaxRequestBytes = uint64_t{kSizeMax} * kSegMax;
inline constexpr uint32_t kMaxDiscardSectors = (256u << 20) / kSectorSize;
inline constexpr uint32_t kMaxWriteZeroesSectors = (16u << 20) / kSectorSize;

}  // namespace kiln::virtio::blk
