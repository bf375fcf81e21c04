// Where the host console's input goes: the UART (ttyS0) or virtio-console (hvc0). The VMM reads
// its stdin only while the device has room, so a guest that does not read cannot make Kiln
// buffer without bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kiln {

class ConsoleInput {
 public:
  virtual ~ConsoleInput() = default;
  // Queues host input for the guest; returns how many bytes were taken (the rest does not fit).
  virtual size_t enqueue_input(std::span<const uint8_t> bytes) = 0;
  virtual size_t rx_room() const = 0;
};

}  // namespace kiln
