// i8042 keyboard controller, only as much as a PC needs to reset: command 0xFE written to port
// 0x64 pulses the CPU reset line. Kiln treats that as the guest asking to stop; `kiln` exits 0.
// Reads answer "no data, input buffer empty" so drivers probing the controller move on.
#pragma once

#include <functional>

#include "vmm/bus.h"

namespace kiln {

class I8042 : public BusDevice {
 public:
  static constexpr uint16_t kDataPort = 0x60;
  static constexpr uint16_t kCommandPort = 0x64;
  using Reset = std::function<void()>;

  explicit I8042(Reset on_reset) : on_reset_(std::move(on_reset)) {}
  // Registered over 0x60..0x64; offset 0 is the data port, offset 4 the command/status port.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  Reset on_reset_;
};

}  // namespace kiln
