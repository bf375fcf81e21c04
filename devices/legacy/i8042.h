// i8042 keyboard controller with a PS/2 keyboard behind it: as much as a PC guest needs to
// probe the keyboard, to reset the machine (controller command 0xFE pulses the CPU reset line)
// and to receive Ctrl-Alt-Del from the API's SendCtrlAltDel. No mouse (AUX) port: AUX commands
// get no answer, so drivers time out and carry on without one.
//
// Port 0x60 is the data port (output buffer on read; keyboard command or controller argument on
// write), port 0x64 the status register (read) and controller command register (write). Bytes
// for the guest wait in a small output queue; each time one is loaded into the output buffer
// and the controller's keyboard interrupt is enabled, IRQ 1 is raised (edge).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <vector>

#include "base/bus.h"
#include "base/snapshottable.h"

namespace kiln {

class I8042 : public BusDevice, public Snapshottable {
 public:
  static constexpr uint16_t kDataPort = 0x60;
  static constexpr uint16_t kCommandPort = 0x64;
  static constexpr uint32_t kIrq = 1;
  static constexpr size_t kQueueCapacity = 16;
  using Callback = std::function<void()>;

  // `on_reset`: the guest pulsed the reset line. `raise_irq`: signal IRQ 1.
  I8042(Callback on_reset, Callback raise_irq)
      : on_reset_(std::move(on_reset)), raise_irq_(std::move(raise_irq)) {}

  // Registered over 0x60..0x64; offset 0 is the data port, offset 4 the command/status port.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  enum class KeyResult { kSent, kKeyboardDisabled, kQueueFull };
  // Queues the press and release codes of Ctrl-Alt-Del, in scan code set 2, or set 1 when the
  // guest turned on the controller's translation. Nothing is queued unless all of them fit.
  KeyResult send_ctrl_alt_del();

  // The output queue, the command byte and the keyboard's state (version 1).
  std::vector<uint8_t> save() const override;
  void restore(std::span<const uint8_t> state) override;

 private:
  void controller_command(uint8_t cmd);
  void data_write(uint8_t value);
  void keyboard_command(uint8_t cmd);
  void keyboard_argument(uint8_t cmd, uint8_t arg);
  // Appends bytes to the output queue; raises IRQ 1 if the output buffer was empty.
  void push(std::initializer_list<uint8_t> bytes);
  void raise_if_ready();
  bool translating() const;

  mutable std::mutex mutex_;
  Callback on_reset_;
  Callback raise_irq_;
  std::deque<uint8_t> queue_;  // front() is the output buffer the guest reads at port 0x60
  // Controller command byte ("CTR"): keyboard interrupt on, system flag, AUX port disabled,
  // no translation. Bit 4 disables the keyboard, bit 6 turns on set 2 -> set 1 translation.
  uint8_t command_byte_ = 0x25;
  uint8_t last_port_write_ = 0;
  enum class ControllerArg : uint8_t { kNone, kCommandByte, kOutputPort, kAux };
  ControllerArg controller_arg_ = ControllerArg::kNone;
  uint8_t keyboard_arg_for_ = 0;  // keyboard command awaiting its argument byte (0: none)
  uint8_t scan_set_ = 2;
  bool scanning_ = true;  // keyboard enabled (0xF4) / disabled (0xF5)
};

}  // namespace kiln
