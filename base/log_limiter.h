// Limits how often one source of guest-triggered warnings logs: a hostile or broken guest must
// not be able to flood the host's logs. The first kBurst events log; after that one in kEvery.
#pragma once

#include <cstdint>

namespace kiln {

class LogLimiter {
 public:
  static constexpr uint64_t kBurst = 10;
  static constexpr uint64_t kEvery = 1000;
  // True when this event should be logged.
  bool allow() {
    ++events_;
    return events_ <= kBurst || events_ % kEvery == 0;
  }
  uint64_t events() const { return events_; }

 private:
  uint64_t events_ = 0;
};

}  // namespace kiln
