#include "devices/rate_limiter/rate_limiter.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>

#include "base/error.h"

namespace kiln {

namespace {

std::optional<TokenBucket> make_bucket(const std::optional<BucketSpec>& spec) {
  if (!spec) return std::nullopt;
  return TokenBucket(spec->size, spec->refill_time, spec->one_time_burst);
}

void apply(std::optional<TokenBucket>& bucket, const BucketUpdate& update) {
  if (update.kind == BucketUpdate::Kind::kDisable) bucket.reset();
  if (update.kind == BucketUpdate::Kind::kSet) bucket = make_bucket(update.spec);
}

}  // namespace

RateLimiter::RateLimiter(std::optional<BucketSpec> bandwidth, std::optional<BucketSpec> ops)
    : bandwidth_(make_bucket(bandwidth)), ops_(make_bucket(ops)) {
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) throw_errno("timerfd_create for a rate limiter");
  timer_ = UniqueFd(fd);
}

bool RateLimiter::consume(uint64_t bytes, Clock::time_point now) {
  if (unlimited()) return true;
  if (blocked_) return false;
  const bool bytes_ok = !bandwidth_ || bandwidth_->allows(bytes, now);
  const bool ops_ok = !ops_ || ops_->allows(1, now);
  if (!bytes_ok || !ops_ok) {
    std::chrono::nanoseconds wait{0};
    if (!bytes_ok) wait = std::max(wait, bandwidth_->time_until(bytes, now));
    if (!ops_ok) wait = std::max(wait, ops_->time_until(1, now));
    block(wait);
    return false;
  }
  charge(bytes, now);
  return true;
}

bool RateLimiter::ready(Clock::time_point now) {
  if (unlimited()) return true;
  if (blocked_) return false;
  std::chrono::nanoseconds wait{0};
  if (bandwidth_ && !bandwidth_->allows(1, now)) wait = bandwidth_->time_until(1, now);
  if (ops_ && !ops_->allows(1, now)) wait = std::max(wait, ops_->time_until(1, now));
  if (wait.count() == 0) return true;
  block(wait);
  return false;
}

void RateLimiter::charge(uint64_t bytes, Clock::time_point now) {
  if (bandwidth_) bandwidth_->consume(bytes, now);
  if (ops_) ops_->consume(1, now);
}

bool RateLimiter::on_timer() {
  uint64_t expirations = 0;
  if (::read(timer_.get(), &expirations, sizeof(expirations)) != sizeof(expirations)) return false;
  blocked_ = false;
  return true;
}

void RateLimiter::update(const BucketUpdate& bandwidth, const BucketUpdate& ops) {
  apply(bandwidth_, bandwidth);
  apply(ops_, ops);
  // Wake the device now (if it is parked, it tries again under the new buckets).
  blocked_ = true;
  arm(std::chrono::nanoseconds(1));
}

void RateLimiter::block(std::chrono::nanoseconds delay) {
  blocked_ = true;
  arm(delay);
}

void RateLimiter::arm(std::chrono::nanoseconds delay) {
  itimerspec spec{};
  delay = std::max(delay, std::chrono::nanoseconds(1));  // 0 would disarm
  spec.it_value.tv_sec = static_cast<time_t>(delay.count() / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(delay.count() % 1'000'000'000);
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

}  // namespace kiln
