// The console's escape sequence: Ctrl-A then 'x' quits Kiln; Ctrl-A Ctrl-A sends one Ctrl-A to
// the guest. Everything else passes through unchanged.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kiln {

class ConsoleEscape {
 public:
  static constexpr uint8_t kEscape = 0x01;  // Ctrl-A
  static constexpr uint8_t kQuit = 'x';

  struct Result {
    std::vector<uint8_t> forward;  // bytes for the guest
    bool quit = false;             // the user asked Kiln to stop
  };
  Result feed(std::span<const uint8_t> input);

 private:
  bool after_escape_ = false;
};

}  // namespace kiln
