// virtio-balloon (virtio 1.2, section 5.5): what Kiln's balloon device needs of it.
#pragma once

#include <cstdint>

namespace kiln::virtio::balloon {

inline constexpr uint32_t kDeviceId = 5;

// Feature bits.
inline constexpr unsigned kFStatsVq = 1;       // a statistics queue
inline constexpr unsigned kFDeflateOnOom = 2;  // the guest deflates when it runs out of memory
inline constexpr unsigned kFReporting = 5;     // a free page reporting queue

// The driver numbers only the queues whose features were negotiated, in this order.
enum class QueueRole { kInflate, kDeflate, kStats, kReporting, kNone };

// Configuration space (little-endian): the host's target and the driver's actual page counts.
inline constexpr uint64_t kConfigNumPages = 0;
inline constexpr uint64_t kConfigActual = 4;
inline constexpr uint64_t kConfigSize = 16;  // + free_page_hint_cmd_id and poison_val (unused)

// Inflate and deflate buffers are arrays of 32-bit page frame numbers of 4 KiB pages.
inline constexpr uint64_t kPageShift = 12;

// A statistics buffer is an array of these (packed: 10 bytes each).
#pragma pack(push, 1)
struct Stat {
  uint16_t tag;
  uint64_t val;
};
#pragma pack(pop)
static_assert(sizeof(Stat) == 10);

// Tags (Linux include/uapi/linux/virtio_balloon.h).
enum StatTag : uint16_t {
  kSwapIn = 0,
  kSwapOut = 1,
  kMajorFaults = 2,
  kMinorFaults = 3,
  kFreeMemory = 4,
  kTotalMemory = 5,
  kAvailableMemory = 6,
  kDiskCaches = 7,
  kHugetlbAllocations = 8,
  kHugetlbFailures = 9,
  kOomKill = 10,
  kAllocStall = 11,
  kAsyncScan = 12,
  kDirectScan = 13,
  kAsyncReclaim = 14,
  kDirectReclaim = 15,
  kStatTags = 16,
};

}  // namespace kiln::virtio::balloon
