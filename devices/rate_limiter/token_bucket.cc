#include "devices/rate_limiter/token_bucket.h"

#include <algorithm>
#include <limits>

namespace kiln {

namespace {

// `refill_time` in nanoseconds, at least 1 and at most the longest a signed 64-bit count holds
// (about 292 years): milliseconds beyond that would overflow the conversion.
std::chrono::nanoseconds refill_nanoseconds(std::chrono::milliseconds refill_time) {
  constexpr int64_t kMaxMs = std::numeric_limits<int64_t>::max() / 1'000'000;
  const int64_t ms = std::clamp<int64_t>(refill_time.count(), 0, kMaxMs);
  return std::max(std::chrono::nanoseconds(ms * 1'000'000), std::chrono::nanoseconds(1));
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

}  // namespace

TokenBucket::TokenBucket(uint64_t size, std::chrono::milliseconds refill_time,
                         uint64_t one_time_burst, Clock::time_point now)
    : size_(std::max<uint64_t>(size, 1)),
      refill_time_(refill_nanoseconds(refill_time)),
      burst_(one_time_burst),
      tokens_(size_),
      last_(now) {}

void TokenBucket::refill(Clock::time_point now) {
  if (now <= last_) return;
  const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_);
  // tokens = elapsed * size / refill_time, in 128-bit so long idle periods cannot overflow.
  const unsigned __int128 add = static_cast<unsigned __int128>(elapsed.count()) * size_ /
                                static_cast<uint64_t>(refill_time_.count());
  if (add == 0) return;  // keep `last_` so fractions of a token accumulate
  const unsigned __int128 paid = std::min<unsigned __int128>(add, debt_);
  debt_ -= static_cast<uint64_t>(paid);
  tokens_ = static_cast<uint64_t>(std::min<unsigned __int128>(tokens_ + (add - paid), size_));
  // Advance by the time those whole tokens represent (the full span once the bucket is full).
  if (tokens_ == size_ && debt_ == 0) {
    last_ = now;
  } else {
    last_ += std::chrono::nanoseconds(
        static_cast<int64_t>(add * static_cast<uint64_t>(refill_time_.count()) / size_));
  }
}

uint64_t TokenBucket::available(Clock::time_point now) {
  refill(now);
  return saturating_add(tokens_, burst_);
}

uint64_t TokenBucket::take(uint64_t wanted, Clock::time_point now) {
  refill(now);
  const uint64_t from_burst = std::min(wanted, burst_);
  burst_ -= from_burst;
  const uint64_t from_tokens = std::min(wanted - from_burst, tokens_);
  tokens_ -= from_tokens;
  return from_burst + from_tokens;
}

std::chrono::nanoseconds TokenBucket::time_until(uint64_t wanted, Clock::time_point now) {
  refill(now);
  const unsigned __int128 needed = static_cast<unsigned __int128>(debt_) + std::min(wanted, size_);
  const uint64_t have = saturating_add(tokens_, burst_);
  if (have >= needed) return std::chrono::nanoseconds(0);
  const unsigned __int128 missing = needed - have;
  const unsigned __int128 ns =
      (missing * static_cast<uint64_t>(refill_time_.count()) + size_ - 1) / size_;
  // Minus what has already accrued towards the next token since `last_` (never negative: a
  // `now` before `last_` accrued nothing). A debt can make ns longer than an int64 holds.
  constexpr unsigned __int128 kMaxNs = std::numeric_limits<int64_t>::max();
  const auto full = std::chrono::nanoseconds(static_cast<int64_t>(std::min(ns, kMaxNs)));
  const auto accrued = now > last_ ? std::min<std::chrono::nanoseconds>(now - last_, full)
                                   : std::chrono::nanoseconds(0);
  return std::max(full - accrued, std::chrono::nanoseconds(1));
}

bool TokenBucket::allows(uint64_t wanted, Clock::time_point now) {
  refill(now);
  if (debt_ != 0) return false;
  const uint64_t have = saturating_add(tokens_, burst_);
  return wanted <= have || have >= size_;
}

void TokenBucket::consume(uint64_t wanted, Clock::time_point now) {
  const uint64_t taken = take(wanted, now);
  debt_ = saturating_add(debt_, wanted - taken);
}

}  // namespace kiln
