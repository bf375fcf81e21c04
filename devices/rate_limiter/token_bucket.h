// A token bucket, Firecracker's rate-limiter model: `size` tokens (bytes or operations) refill
// completely every `refill_time`; an optional one-time burst is spent first. Used by devices to
// cap guest-driven work (virtio-rng bytes/s; drive and net limits use the same type).
//
// Not thread-safe: each device uses its bucket on the event-loop thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace kiln {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // `size` > 0 and `refill_time` > 0 (0 is taken as 1 token / 1 ns; a refill_time too long for a
  // 64-bit nanosecond count, about 292 years, is taken as that longest one); the bucket starts
  // full. Every computation is free of overflow for any arguments.
  TokenBucket(uint64_t size, std::chrono::milliseconds refill_time, uint64_t one_time_burst = 0,
              Clock::time_point now = Clock::now());

  // Tokens that could be taken now (burst included).
  uint64_t available(Clock::time_point now = Clock::now());
  // Takes up to `wanted` tokens; returns how many were taken (0 when empty).
  uint64_t take(uint64_t wanted, Clock::time_point now = Clock::now());
  // How long until at least `wanted` tokens (at most `size`) are available (a debt paid first).
  std::chrono::nanoseconds time_until(uint64_t wanted, Clock::time_point now = Clock::now());

  // All-or-nothing use, as Firecracker's buckets: allows() says whether `wanted` tokens may be
  // consumed now - all of them are there, or `wanted` is more than the bucket ever holds and it
  // is full (over-consumption) - and never while a debt is unpaid. consume() then takes them,
  // from the burst first; what is not there becomes a debt that refills before any token does,
  // so the long-run rate holds for requests of any size.
  bool allows(uint64_t wanted, Clock::time_point now = Clock::now());
  void consume(uint64_t wanted, Clock::time_point now = Clock::now());
  uint64_t debt() const { return debt_; }

  uint64_t size() const { return size_; }

 private:
  void refill(Clock::time_point now);

  uint64_t size_;
  std::chrono::nanoseconds refill_time_;
  uint64_t burst_;
  uint64_t tokens_;
  uint64_t debt_ = 0;  // tokens consumed beyond what there was
  Clock::time_point last_;
};

}  // namespace kiln
