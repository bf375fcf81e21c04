// Why a VM stopped, and the one-shot signal through which any thread asks it to stop.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "base/event_fd.h"

namespace kiln {

// Exit statuses of `kiln`.
inline constexpr int kExitGuestStopped = 0;  // guest reset or powered off
inline constexpr int kExitVmError = 1;       // the VM failed: triple fault, KVM error, ...
inline constexpr int kExitUsage = 2;         // bad flags, files or images; nothing ran
inline constexpr int kExitUserStop = 3;      // stopped by the console escape or a signal

struct StopReason {
  int exit_code = kExitGuestStopped;
  std::string message;
};

class StopSignal {
 public:
  // The first request wins; later ones are ignored (a reset racing a triple fault, ...).
  void request(StopReason reason) {
    {
      std::lock_guard lock(mutex_);
      if (reason_) return;
      reason_ = std::move(reason);
    }
    cv_.notify_all();
    event_.signal();
  }
  // Signalled once a stop was requested: lets an event loop wait for it.
  int fd() const { return event_.fd(); }
  bool requested() const {
    std::lock_guard lock(mutex_);
    return reason_.has_value();
  }
  StopReason wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return reason_.has_value(); });
    return *reason_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<StopReason> reason_;
  EventFd event_;
};

}  // namespace kiln
