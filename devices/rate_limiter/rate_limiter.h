// Firecracker's RateLimiter: an optional bucket of bytes and an optional bucket of operations,
// used all-or-nothing (a request takes its bytes and one operation, or waits), and a timerfd
// that fires when a blocked limiter may go on. Devices watch fd() beside their other host fds;
// a throttled queue is parked on that timer, never polled. Requests are only delayed.
//
// Not thread-safe: the device uses it on the event-loop thread; update() runs under the
// transport's lock (excluding queue and host-event processing).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "base/unique_fd.h"
#include "devices/rate_limiter/token_bucket.h"

namespace kiln {

struct BucketSpec {
  uint64_t size = 0;  // tokens; >= 1
  std::chrono::milliseconds refill_time{0};
  uint64_t one_time_burst = 0;
};

// A change to one bucket (PATCH): keep it, remove it, or replace it by a new, full one.
struct BucketUpdate {
  enum class Kind { kKeep, kDisable, kSet };
  Kind kind = Kind::kKeep;
  BucketSpec spec;
  static BucketUpdate keep() { return {}; }
  static BucketUpdate disable() { return {Kind::kDisable, {}}; }
  static BucketUpdate set(BucketSpec s) { return {Kind::kSet, s}; }
};

class RateLimiter {
 public:
  using Clock = TokenBucket::Clock;

  // No buckets: unlimited (and the timer never fires). Throws kiln::Error if timerfd fails.
  explicit RateLimiter(std::optional<BucketSpec> bandwidth = std::nullopt,
                       std::optional<BucketSpec> ops = std::nullopt);

  bool unlimited() const { return !bandwidth_ && !ops_; }
  // Blocked: a consume() failed and the timer has not fired yet.
  bool blocked() const { return blocked_; }

  // One operation of `bytes` bytes: true and taken, or false (nothing taken), the limiter then
  // blocked with its timer armed for when both buckets allow it.
  bool consume(uint64_t bytes, Clock::time_point now = Clock::now());
  // Whether any request could go now (a token of each bucket), else blocked as consume() does:
  // for traffic whose size is known only once it is taken (network RX), then charge()d.
  bool ready(Clock::time_point now = Clock::now());
  // Takes one operation of `bytes` whatever is left: what is missing is a debt paid first.
  void charge(uint64_t bytes, Clock::time_point now = Clock::now());

  // The timerfd (level: readable once expired). on_timer() reads it: true if it had fired, the
  // limiter then unblocked.
  int fd() const { return timer_.get(); }
  bool on_timer();

  // PATCH: buckets replaced, removed or kept; the limiter is unblocked and its timer fires at
  // once, so a parked queue is looked at again under the new limits.
  void update(const BucketUpdate& bandwidth, const BucketUpdate& ops);

 private:
  void block(std::chrono::nanoseconds delay);
  void arm(std::chrono::nanoseconds delay);

  std::optional<TokenBucket> bandwidth_;
  std::optional<TokenBucket> ops_;
  UniqueFd timer_;
  bool blocked_ = false;
};

}  // namespace kiln
