// Constants from the virtio 1.x specification used by the transport, queues and devices.
#pragma once

#include <cstdint>

namespace kiln::virtio {

// Feature bits (device-independent).
inline constexpr uint32_t kFRingIndirectDesc = 28;
inline constexpr uint32_t kFRingEventIdx = 29;
inline constexpr uint32_t kFVersion1 = 32;

inline constexpr uint64_t feature(uint32_t bit) {
  return uint64_t{1} << bit;
}

// Device status bits.
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusDeviceNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Interrupt status bits.
inline constexpr uint32_t kInterruptUsedRing = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

// Split-virtqueue descriptor flags and ring flags.
inline constexpr uint16_t kDescFNext = 1;
inline constexpr uint16_t kDescFWrite = 2;
inline constexpr uint16_t kDescFIndirect = 4;
inline constexpr uint16_t kAvailFNoInterrupt = 1;
inline constexpr uint16_t kUsedFNoNotify = 1;

// Device ids.
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;
inline constexpr uint32_t kDeviceIdConsole = 3;
inline constexpr uint32_t kDeviceIdRng = 4;
inline constexpr uint32_t kDeviceIdVsock = 19;
inline constexpr uint32_t kDeviceIdFs = 26;

struct Descriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct UsedElement {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElement) == 8);

}  // namespace kiln::virtio
