// Puts a terminal in raw mode for the guest console and restores it when destroyed, on every
// exit path that unwinds (Kiln turns fatal signals into an orderly stop, see Vmm).
#pragma once

#include <termios.h>

#include <optional>

namespace kiln {

class RawTerminal {
 public:
  // Switches `fd` to raw mode if it is a terminal; otherwise does nothing.
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return saved_.has_value(); }

 private:
  int fd_;
  std::optional<termios> saved_;
};

}  // namespace kiln
