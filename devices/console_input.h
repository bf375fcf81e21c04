// Where the host console's input goes: the UART (ttyS0) or virtio-console (hvc0). The console
// reader (vmm/console_reader.h) holds only a few bytes the device has not taken, so a guest that
// does not read cannot make Kiln buffer without bound: the rest waits in the pipe or tty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kiln {

class ConsoleInput {
 public:
  virtual ~ConsoleInput() = default;
  // Queues host input for the guest; returns how many bytes were taken. When that leaves the
  // device full or is less than offered, the device calls its rx_space callback once it has
  // room again (so the caller can always wait for that callback before offering more).
  virtual size_t enqueue_input(std::span<const uint8_t> bytes) = 0;
  virtual size_t rx_room() const = 0;
};

}  // namespace kiln
