// An eventfd: a counter other threads (or KVM, as irqfd/ioeventfd) signal.
#pragma once

#include <sys/eventfd.h>

#include <cstdint>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln {

class EventFd {
 public:
  explicit EventFd(int flags = EFD_CLOEXEC | EFD_NONBLOCK) : fd_(::eventfd(0, flags)) {
    if (!fd_) throw_errno("eventfd");
  }
  int fd() const { return fd_.get(); }
  // Adds 1; never blocks for long (the counter would have to reach 2^64-1).
  void signal() const {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof(one));
  }
  // Reads and resets the counter; 0 if it was not signalled (non-blocking fd).
  uint64_t consume() const {
    uint64_t value = 0;
    if (::read(fd_.get(), &value, sizeof(value)) != sizeof(value)) return 0;
    return value;
  }

 private:
  UniqueFd fd_;
};

}  // namespace kiln
