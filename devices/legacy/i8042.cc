#include "devices/legacy/i8042.h"

#include "base/error.h"
#include "base/snapshot/bytes.h"

#include <algorithm>

namespace kiln {

namespace {

constexpr uint64_t kCommandOffset = I8042::kCommandPort - I8042::kDataPort;

// Status register bits.
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystem = 0x04;
constexpr uint8_t kStatusLastWasCommand = 0x08;
constexpr uint8_t kStatusNotInhibited = 0x10;

// Command byte bits.
constexpr uint8_t kCtrKeyboardInterrupt = 0x01;
constexpr uint8_t kCtrKeyboardDisabled = 0x10;
constexpr uint8_t kCtrAuxDisabled = 0x20;
constexpr uint8_t kCtrTranslate = 0x40;

// Controller commands (port 0x64).
constexpr uint8_t kCmdReadCommandByte = 0x20;
constexpr uint8_t kCmdWriteCommandByte = 0x60;
constexpr uint8_t kCmdDisableAux = 0xa7;
constexpr uint8_t kCmdEnableAux = 0xa8;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdKeyboardInterfaceTest = 0xab;
constexpr uint8_t kCmdDisableKeyboard = 0xad;
constexpr uint8_t kCmdEnableKeyboard = 0xae;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
constexpr uint8_t kCmdWriteAux = 0xd4;
constexpr uint8_t kCmdPulseReset = 0xfe;

// Keyboard commands (port 0x60) and replies.
constexpr uint8_t kKbdSetLeds = 0xed;
constexpr uint8_t kKbdEcho = 0xee;
constexpr uint8_t kKbdScanSet = 0xf0;
constexpr uint8_t kKbdIdentify = 0xf2;
constexpr uint8_t kKbdTypematic = 0xf3;
constexpr uint8_t kKbdEnable = 0xf4;
constexpr uint8_t kKbdDisable = 0xf5;
constexpr uint8_t kKbdDefaults = 0xf6;
constexpr uint8_t kKbdResend = 0xfe;
constexpr uint8_t kKbdReset = 0xff;
constexpr uint8_t kAck = 0xfa;
constexpr uint8_t kSelfTestPassed = 0xaa;
constexpr uint8_t kControllerOk = 0x55;

// Output port: bit 0 is the CPU reset line (active low), bit 1 the A20 gate.
constexpr uint8_t kOutputPortDefault = 0x03;

}  // namespace

bool I8042::translating() const {
  return (command_byte_ & kCtrTranslate) != 0;
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  uint8_t value = 0;
  if (offset == kCommandOffset) {
    value = kStatusSystem | kStatusNotInhibited | last_port_write_;
    if (!queue_.empty()) value |= kStatusOutputFull;
  } else if (offset == 0 && !queue_.empty()) {
    value = queue_.front();
    queue_.pop_front();
    raise_if_ready();  // the next byte moves into the output buffer
  }
  std::fill(data.begin(), data.end(), value);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  if (offset == kCommandOffset) {
    last_port_write_ = kStatusLastWasCommand;
    controller_command(data[0]);
  } else if (offset == 0) {
    last_port_write_ = 0;
    data_write(data[0]);
  }
}

void I8042::controller_command(uint8_t cmd) {
  controller_arg_ = ControllerArg::kNone;
  switch (cmd) {
    case kCmdReadCommandByte:
      push({command_byte_});
      break;
    case kCmdWriteCommandByte:
      controller_arg_ = ControllerArg::kCommandByte;
      break;
    case kCmdDisableAux:
      command_byte_ |= kCtrAuxDisabled;
      break;
    case kCmdEnableAux:
      command_byte_ &= static_cast<uint8_t>(~kCtrAuxDisabled);
      break;
    case kCmdSelfTest:
      push({kControllerOk});
      break;
    case kCmdKeyboardInterfaceTest:
      push({0x00});
      break;
    case kCmdDisableKeyboard:
      command_byte_ |= kCtrKeyboardDisabled;
      break;
    case kCmdEnableKeyboard:
      command_byte_ &= static_cast<uint8_t>(~kCtrKeyboardDisabled);
      break;
    case kCmdReadOutputPort:
      push({kOutputPortDefault});
      break;
    case kCmdWriteOutputPort:
      controller_arg_ = ControllerArg::kOutputPort;
      break;
    case kCmdWriteAux:
      controller_arg_ = ControllerArg::kAux;  // no mouse: the byte is swallowed
      break;
    case kCmdPulseReset:
      on_reset_();
      break;
    default:
      break;  // unknown or AUX-only (0xa9, 0xd3): no answer, as from a controller without it
  }
}

void I8042::data_write(uint8_t value) {
  const ControllerArg arg = controller_arg_;
  controller_arg_ = ControllerArg::kNone;
  switch (arg) {
    case ControllerArg::kCommandByte:
      command_byte_ = value;
      raise_if_ready();  // enabling the interrupt with a byte waiting delivers it
      return;
    case ControllerArg::kOutputPort:
      if ((value & 0x01) == 0) on_reset_();  // reset line pulled low
      return;
    case ControllerArg::kAux:
      return;
    case ControllerArg::kNone:
      break;
  }
  if (keyboard_arg_for_ != 0) {
    const uint8_t cmd = keyboard_arg_for_;
    keyboard_arg_for_ = 0;
    keyboard_argument(cmd, value);
  } else {
    keyboard_command(value);
  }
}

void I8042::keyboard_command(uint8_t cmd) {
  switch (cmd) {
    case kKbdReset:
      queue_.clear();
      scan_set_ = 2;
      scanning_ = true;
      push({kAck, kSelfTestPassed});
      break;
    case kKbdIdentify:
      // An MF2 keyboard: 0xab 0x83, which the controller's translation turns into 0xab 0x41.
      push({kAck, 0xab, static_cast<uint8_t>(translating() ? 0x41 : 0x83)});
      break;
    case kKbdSetLeds:
    case kKbdTypematic:
    case kKbdScanSet:
      keyboard_arg_for_ = cmd;
      push({kAck});
      break;
    case kKbdEnable:
      scanning_ = true;
      push({kAck});
      break;
    case kKbdDisable:
      scanning_ = false;
      push({kAck});
      break;
    case kKbdDefaults:
      scan_set_ = 2;
      push({kAck});
      break;
    case kKbdEcho:
      push({kKbdEcho});
      break;
    default:
      push({kKbdResend});
      break;
  }
}

void I8042::keyboard_argument(uint8_t cmd, uint8_t arg) {
  if (cmd == kKbdScanSet) {
    if (arg == 0) {
      // Report the current set; under translation the controller turns 1 and 2 into 0x43, 0x41.
      const uint8_t set = translating() ? (scan_set_ == 1 ? 0x43 : 0x41) : scan_set_;
      push({kAck, set});
      return;
    }
    if (arg > 2) {  // set 3 is not emulated: refuse it, the driver stays on set 2
      push({kKbdResend});
      return;
    }
    scan_set_ = arg;
  }
  push({kAck});  // LEDs, typematic rate: accepted, nothing to do
}

std::vector<uint8_t> I8042::save() const {
  std::lock_guard lock(mutex_);
  snapshot::ByteWriter w;
  w.u16(1);
  w.blob(std::string(queue_.begin(), queue_.end()));
  w.u8(command_byte_);
  w.u8(last_port_write_);
  w.u8(static_cast<uint8_t>(controller_arg_));
  w.u8(keyboard_arg_for_);
  w.u8(scan_set_);
  w.u8(scanning_ ? 1 : 0);
  return w.take();
}

void I8042::restore(std::span<const uint8_t> state) {
  snapshot::ByteReader r(state.data(), state.size(), "i8042 state");
  r.expect_version(1);
  std::string queue = r.blob(kQueueCapacity);
  uint8_t command_byte = r.u8(), last_port_write = r.u8(), arg = r.u8(), kbd_arg = r.u8(),
          set = r.u8(), scanning = r.u8();
  r.finish();
  // Only values the controller itself can reach.
  if (arg > static_cast<uint8_t>(ControllerArg::kAux) ||
      (kbd_arg != 0 && kbd_arg != kKbdSetLeds && kbd_arg != kKbdTypematic &&
       kbd_arg != kKbdScanSet) ||
      (set != 1 && set != 2) || scanning > 1)
    throw kiln::Error("i8042 state: a value the controller never holds");
  std::lock_guard lock(mutex_);
  queue_.assign(queue.begin(), queue.end());
  command_byte_ = command_byte;
  last_port_write_ = last_port_write;
  controller_arg_ = static_cast<ControllerArg>(arg);
  keyboard_arg_for_ = kbd_arg;
  scan_set_ = set;
  scanning_ = scanning == 1;
}

I8042::KeyResult I8042::send_ctrl_alt_del() {
  std::lock_guard lock(mutex_);
  if (!scanning_ || (command_byte_ & kCtrKeyboardDisabled)) return KeyResult::kKeyboardDisabled;
  // Left Ctrl, left Alt, Delete (an extended key) pressed, then released in reverse order.
  // Set 1 (what the guest reads under translation): break = make | 0x80. Set 2: 0xf0 prefix.
  const bool set1 = translating() || scan_set_ == 1;
  const std::initializer_list<uint8_t> set1_codes = {0x1d, 0x38, 0xe0, 0x53,
                                                     0xe0, 0xd3, 0xb8, 0x9d};
  const std::initializer_list<uint8_t> set2_codes = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0,
                                                     0x71, 0xf0, 0x11, 0xf0, 0x14};
  const auto& codes = set1 ? set1_codes : set2_codes;
  if (queue_.size() + codes.size() > kQueueCapacity) return KeyResult::kQueueFull;
  push(codes);
  return KeyResult::kSent;
}

void I8042::push(std::initializer_list<uint8_t> bytes) {
  const bool was_empty = queue_.empty();
  for (uint8_t b : bytes) {
    if (queue_.size() == kQueueCapacity) break;  // a guest that never reads loses the rest
    queue_.push_back(b);
  }
  if (was_empty) raise_if_ready();
}

void I8042::raise_if_ready() {
  if (!queue_.empty() && (command_byte_ & kCtrKeyboardInterrupt)) raise_irq_();
}

}  // namespace kiln
