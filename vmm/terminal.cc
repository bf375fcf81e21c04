#include "vmm/terminal.h"

#include <unistd.h>

namespace kiln {

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  termios current{};
  if (!::isatty(fd) || ::tcgetattr(fd, &current) < 0) return;
  saved_ = current;
  termios raw = current;
  ::cfmakeraw(&raw);
  raw.c_oflag |= OPOST | ONLCR;  // keep "\n" -> "\r\n" so host-side logs stay readable
  ::tcsetattr(fd, TCSANOW, &raw);
}

RawTerminal::~RawTerminal() {
  if (saved_) ::tcsetattr(fd_, TCSANOW, &*saved_);
}

}  // namespace kiln
