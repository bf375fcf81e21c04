#include "vmm/console_escape.h"

namespace kiln {

ConsoleEscape::Result ConsoleEscape::feed(std::span<const uint8_t> input) {
  Result result;
  result.forward.reserve(input.size());
  for (uint8_t byte : input) {
    if (!after_escape_) {
      if (byte == kEscape) {
        after_escape_ = true;
      } else {
        result.forward.push_back(byte);
      }
      continue;
    }
    after_escape_ = false;
    if (byte == kQuit) {
      result.quit = true;
      return result;
    }
    if (byte != kEscape) result.forward.push_back(kEscape);  // not a command: pass both
    result.forward.push_back(byte);
  }
  return result;
}

}  // namespace kiln
