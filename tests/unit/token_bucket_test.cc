#include "devices/rate_limiter/token_bucket.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

using std::chrono::milliseconds;
using Clock = TokenBucket::Clock;

TEST(TokenBucket, StartsFullAndRefillsInProportionToTime) {
  const Clock::time_point t0{};
  TokenBucket b(1000, milliseconds(1000), 0, t0);
  EXPECT_EQ(b.available(t0), 1000u);
  EXPECT_EQ(b.take(600, t0), 600u);
  EXPECT_EQ(b.take(600, t0), 400u);  // partial: only what is left
  EXPECT_EQ(b.take(1, t0), 0u);
  EXPECT_EQ(b.available(t0 + milliseconds(250)), 250u);
  EXPECT_EQ(b.available(t0 + milliseconds(10'000)), 1000u);  // never above size
}

TEST(TokenBucket, FractionsOfATokenAccumulate) {
  const Clock::time_point t0{};
  TokenBucket b(10, milliseconds(1000), 0, t0);  // one token per 100 ms
  b.take(10, t0);
  for (int ms = 30; ms <= 90; ms += 30) EXPECT_EQ(b.available(t0 + milliseconds(ms)), 0u);
  EXPECT_EQ(b.available(t0 + milliseconds(100)), 1u);
  EXPECT_EQ(b.available(t0 + milliseconds(199)), 1u);
  EXPECT_EQ(b.available(t0 + milliseconds(200)), 2u);
}

TEST(TokenBucket, TimeUntilTokensAreAvailable) {
  const Clock::time_point t0{};
  TokenBucket b(100, milliseconds(1000), 0, t0);
  EXPECT_EQ(b.time_until(50, t0).count(), 0);
  b.take(100, t0);
  EXPECT_EQ(b.time_until(50, t0), milliseconds(500));
  EXPECT_EQ(b.time_until(500, t0), milliseconds(1000));  // capped at the bucket size
  const auto t1 = t0 + milliseconds(5);                  // half a token accrued
  EXPECT_EQ(b.time_until(1, t1), milliseconds(5));
  EXPECT_EQ(b.available(t1 + b.time_until(1, t1)), 1u);
}

TEST(TokenBucket, OneTimeBurstIsSpentFirstAndOnce) {
  const Clock::time_point t0{};
  TokenBucket b(100, milliseconds(1000), 50, t0);
  EXPECT_EQ(b.available(t0), 150u);
  EXPECT_EQ(b.take(120, t0), 120u);
  EXPECT_EQ(b.available(t0), 30u);
  EXPECT_EQ(b.available(t0 + milliseconds(100'000)), 100u);  // the burst does not come back
}

// refill_time up to 2^64-1 ms used to overflow the ms -> ns conversion (UBSan), leaving a
// negative refill time clamped to 1 ns: an unlimited bucket.
TEST(TokenBucket, HugeRefillTimeStaysALimitNotUnlimited) {
  const Clock::time_point t0{};
  for (uint64_t ms : {uint64_t{9'223'372'036'854}, uint64_t{9'223'372'036'855}, uint64_t{1} << 62,
                      ~uint64_t{0} >> 1}) {
    TokenBucket b(10, milliseconds(static_cast<int64_t>(ms)), 0, t0);
    EXPECT_EQ(b.take(10, t0), 10u) << ms;
    // A day later not even one token has come back: 10 tokens take ~292 years.
    EXPECT_EQ(b.available(t0 + std::chrono::hours(24)), 0u) << ms;
    EXPECT_GT(b.time_until(1, t0), std::chrono::hours(24 * 365)) << ms;
  }
}

TEST(TokenBucket, LargestSizeAndBurstDoNotWrap) {
  const Clock::time_point t0{};
  const uint64_t max = ~uint64_t{0};
  TokenBucket b(max, milliseconds(1), max, t0);
  EXPECT_EQ(b.available(t0), max);  // tokens + burst saturates instead of wrapping to max - 1
  EXPECT_EQ(b.time_until(max, t0).count(), 0);
  EXPECT_EQ(b.take(max, t0), max);  // the burst first
  EXPECT_EQ(b.available(t0), max);  // the full bucket is left
  EXPECT_EQ(b.take(max, t0), max);
  EXPECT_EQ(b.available(t0), 0u);
  // A year of refill at 2^64 tokens per ms is capped at the size.
  EXPECT_EQ(b.available(t0 + std::chrono::hours(24 * 365)), max);
}

TEST(TokenBucket, TimeUntilWithAnEarlierClockIsNotNegative) {
  const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);
  TokenBucket b(10, milliseconds(1000), 0, t0);
  b.take(10, t0);
  const auto wait = b.time_until(1, t0 - std::chrono::minutes(30));
  EXPECT_EQ(wait, milliseconds(100));
}

}  // namespace
}  // namespace kiln
