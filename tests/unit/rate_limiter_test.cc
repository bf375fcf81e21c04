#include "devices/rate_limiter/rate_limiter.h"

#include <gtest/gtest.h>
#include <poll.h>

#include "devices/rate_limiter/token_bucket.h"

namespace kiln {
namespace {

using std::chrono::milliseconds;
using Clock = TokenBucket::Clock;

bool fires_within(const RateLimiter& l, int ms) {
  pollfd p{l.fd(), POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

TEST(TokenBucketAllOrNothing, AllowsOnlyWhatIsThere) {
  const Clock::time_point t0{};
  TokenBucket b(1000, milliseconds(1000), 0, t0);
  EXPECT_TRUE(b.allows(600, t0));
  b.consume(600, t0);
  EXPECT_FALSE(b.allows(600, t0));  // 400 left: nothing is taken in part
  EXPECT_EQ(b.available(t0), 400u);
  EXPECT_TRUE(b.allows(600, t0 + milliseconds(200)));
}

TEST(TokenBucketAllOrNothing, ARequestLargerThanTheBucketGoesWhenFullAndLeavesADebt) {
  const Clock::time_point t0{};
  TokenBucket b(1000, milliseconds(1000), 0, t0);  // 1000 tokens/s
  EXPECT_TRUE(b.allows(3000, t0));                 // more than it ever holds: full is enough
  b.consume(3000, t0);
  EXPECT_EQ(b.debt(), 2000u);
  EXPECT_EQ(b.time_until(1, t0), milliseconds(2001));
  EXPECT_FALSE(b.allows(1, t0 + milliseconds(1999)));  // the debt refills first
  EXPECT_FALSE(b.allows(1, t0 + milliseconds(2000)));  // paid, not yet a token
  EXPECT_TRUE(b.allows(1, t0 + milliseconds(2001)));
  EXPECT_EQ(b.debt(), 0u);
  // 3000 tokens in ~3 s: the long-run rate holds for requests of any size.
  EXPECT_FALSE(b.allows(3000, t0 + milliseconds(2500)));
  EXPECT_TRUE(b.allows(3000, t0 + milliseconds(3000)));
}

TEST(TokenBucketAllOrNothing, HugeDebtsNeitherOverflowNorWrap) {
  const Clock::time_point t0{};
  TokenBucket b(1, milliseconds(9'223'372'036'854), 0, t0);  // the longest refill_time
  b.consume(~uint64_t{0}, t0);
  b.consume(~uint64_t{0}, t0);  // saturates
  EXPECT_EQ(b.debt(), ~uint64_t{0});
  EXPECT_GT(b.time_until(1, t0).count(), 0);  // the longest wait, not a negative one
  EXPECT_FALSE(b.allows(1, t0 + std::chrono::hours(24 * 365)));
}

TEST(RateLimiter, UnlimitedNeverBlocks) {
  RateLimiter l;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(l.consume(1 << 20));
  EXPECT_FALSE(l.blocked());
  EXPECT_FALSE(fires_within(l, 0));
}

TEST(RateLimiter, BothBucketsMustAllowAndNeitherIsTakenInPart) {
  const auto t0 = Clock::now();
  RateLimiter l(BucketSpec{1000, milliseconds(1000), 0}, BucketSpec{2, milliseconds(1000), 0});
  EXPECT_TRUE(l.consume(100, t0));
  EXPECT_TRUE(l.consume(100, t0));
  EXPECT_FALSE(l.consume(100, t0));  // ops spent; bytes left are not taken
  EXPECT_TRUE(l.blocked());
  EXPECT_FALSE(l.consume(1, t0));  // blocked until the timer: no request slips past
  ASSERT_TRUE(fires_within(l, 2000));
  EXPECT_TRUE(l.on_timer());
  EXPECT_FALSE(l.blocked());
  EXPECT_TRUE(l.consume(800, Clock::now()));  // 800 bytes were there all along
}

TEST(RateLimiter, TheTimerFiresWhenTheBucketAllows) {
  RateLimiter l(BucketSpec{1000, milliseconds(200), 0});  // 5000 bytes/s
  ASSERT_TRUE(l.consume(1000));
  const auto t = Clock::now();
  ASSERT_FALSE(l.consume(500));  // 100 ms of refill
  EXPECT_FALSE(fires_within(l, 50));
  ASSERT_TRUE(fires_within(l, 2000));
  const auto waited = Clock::now() - t;
  EXPECT_GE(waited, milliseconds(95));
  ASSERT_TRUE(l.on_timer());
  EXPECT_TRUE(l.consume(500));
  EXPECT_FALSE(l.on_timer());  // read once
}

TEST(RateLimiter, ReadyThenChargeRunsADebt) {
  RateLimiter l(BucketSpec{1000, milliseconds(1000), 0});
  EXPECT_TRUE(l.ready());
  l.charge(5000);  // a frame seen only once read: more than the bucket
  EXPECT_FALSE(l.ready());
  EXPECT_TRUE(l.blocked());
  EXPECT_FALSE(fires_within(l, 100));  // ~4 s of debt
}

TEST(RateLimiter, UpdateReplacesRemovesOrKeepsBucketsAndWakesTheDevice) {
  RateLimiter l(BucketSpec{10, milliseconds(100'000), 0}, BucketSpec{1, milliseconds(100'000), 0});
  ASSERT_TRUE(l.consume(10));
  ASSERT_FALSE(l.consume(1));
  l.update(BucketUpdate::keep(), BucketUpdate::disable());  // bytes still spent
  ASSERT_TRUE(fires_within(l, 1000));
  ASSERT_TRUE(l.on_timer());
  EXPECT_FALSE(l.consume(1));
  EXPECT_FALSE(l.unlimited());
  l.update(BucketUpdate::set({100, milliseconds(1000), 0}), BucketUpdate::keep());
  ASSERT_TRUE(fires_within(l, 1000));
  ASSERT_TRUE(l.on_timer());
  EXPECT_TRUE(l.consume(100));  // a new, full bucket
  l.update(BucketUpdate::disable(), BucketUpdate::keep());
  EXPECT_TRUE(l.unlimited());
}

}  // namespace
}  // namespace kiln
