#include "common/base/clock.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace duet {
namespace {

// Spins (yielding) until `clock` reports `n` callers inside AwaitWithDeadline.
void WaitForWaiters(const FakeClock& clock, int n) {
  while (clock.waiters() != n) std::this_thread::yield();
}

TEST(RealClockTest, IsASingleton) { EXPECT_EQ(RealClock(), RealClock()); }

TEST(RealClockTest, NowAdvances) {
  const absl::Time t0 = RealClock()->Now();
  // absl::Now has at least microsecond resolution: a bounded spin sees it move.
  absl::Time t1 = t0;
  for (int i = 0; i < 100000000 && t1 == t0; ++i) t1 = RealClock()->Now();
  EXPECT_GT(t1, t0);
  // And it is the wall clock, not some other epoch.
  EXPECT_LT(absl::AbsDuration(t1 - absl::Now()), absl::Seconds(60));
}

TEST(RealClockTest, SleepForWaitsAtLeastTheDuration) {
  const absl::Time t0 = RealClock()->Now();
  RealClock()->SleepFor(absl::Milliseconds(2));
  EXPECT_GE(RealClock()->Now() - t0, absl::Milliseconds(2));
}

TEST(RealClockTest, AwaitWithDeadline) {
  absl::Mutex mu;
  bool flag = false;
  absl::MutexLock lock(&mu);
  EXPECT_FALSE(RealClock()->AwaitWithDeadline(&mu, absl::Condition(&flag),
                                              RealClock()->Now() - absl::Seconds(1)));
  flag = true;
  EXPECT_TRUE(RealClock()->AwaitWithDeadline(&mu, absl::Condition(&flag),
                                             RealClock()->Now() + absl::Hours(1)));
}

TEST(FakeClockTest, StartsWhereTold) {
  EXPECT_EQ(FakeClock().Now(), absl::UnixEpoch() + absl::Hours(24));
  const absl::Time start = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(FakeClock(start).Now(), start);
}

TEST(FakeClockTest, NowMovesOnlyWhenTold) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), t0 + absl::Seconds(5));
  clock.Advance(absl::Nanoseconds(1));
  EXPECT_EQ(clock.Now(), t0 + absl::Seconds(5) + absl::Nanoseconds(1));
  clock.Advance(absl::ZeroDuration());
  EXPECT_EQ(clock.Now(), t0 + absl::Seconds(5) + absl::Nanoseconds(1));
}

TEST(FakeClockTest, SleepForAdvancesWithoutBlocking) {
  FakeClock clock;
  const absl::Time t0 = clock.Now();
  const absl::Time real0 = absl::Now();
  clock.SleepFor(absl::Hours(10));  // simulated: returns at once
  EXPECT_EQ(clock.Now(), t0 + absl::Hours(10));
  EXPECT_LT(absl::Now() - real0, absl::Hours(1));
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AwaitReturnsTrueAtOnceWhenConditionHolds) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = true;
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(
      clock.AwaitWithDeadline(&mu, absl::Condition(&flag), clock.Now() + absl::Hours(1)));
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AwaitReturnsFalseAtOnceWhenDeadlinePassed) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  absl::MutexLock lock(&mu);
  const absl::Time t0 = clock.Now();
  EXPECT_FALSE(
      clock.AwaitWithDeadline(&mu, absl::Condition(&flag), t0 - absl::Seconds(1)));
  // A deadline equal to now has come too.
  EXPECT_FALSE(clock.AwaitWithDeadline(&mu, absl::Condition(&flag), t0));
  EXPECT_EQ(clock.Now(), t0);  // waiting does not move the fake clock
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AwaitReturnsTrueWhenAnotherThreadSetsTheCondition) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  std::thread setter([&] {
    WaitForWaiters(clock, 1);
    absl::MutexLock lock(&mu);
    flag = true;
  });
  const absl::Time t0 = clock.Now();
  bool result;
  {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&flag), t0 + absl::Seconds(10));
    EXPECT_TRUE(flag);  // the mutex is held again on return
  }
  setter.join();
  EXPECT_TRUE(result);
  EXPECT_EQ(clock.Now(), t0);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AwaitReturnsFalseWhenAnotherThreadAdvancesPastTheDeadline) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  const absl::Time deadline = clock.Now() + absl::Seconds(10);
  std::thread advancer([&] {
    WaitForWaiters(clock, 1);
    clock.Advance(absl::Seconds(11));
  });
  bool result;
  absl::Time returned_at;
  {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&flag), deadline);
    returned_at = clock.Now();
  }
  advancer.join();
  EXPECT_FALSE(result);
  EXPECT_GE(returned_at, deadline);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AdvanceShortOfTheDeadlineKeepsWaiting) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  const absl::Time deadline = clock.Now() + absl::Seconds(10);
  std::atomic<bool> returned{false};
  absl::Time returned_at;  // written by the waiter before `returned`
  bool result = true;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&flag), deadline);
    returned_at = clock.Now();
    returned = true;
  });
  WaitForWaiters(clock, 1);
  clock.Advance(absl::Seconds(9));
  // Advance has made the waiter re-check its condition (it locks and unlocks the
  // waiter's mutex). A correct waiter stays inside; one that wrongly woke up is usually
  // gone by the time this lock is ours (and is caught by returned_at below otherwise).
  {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(returned.load());
  }
  EXPECT_EQ(clock.waiters(), 1);
  clock.Advance(absl::Seconds(1));  // exactly the deadline
  waiter.join();
  EXPECT_TRUE(returned.load());
  EXPECT_FALSE(result);
  EXPECT_EQ(returned_at, deadline);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, OneAdvanceWakesWaitersOnDifferentMutexes) {
  FakeClock clock;
  absl::Mutex mu_a, mu_b;
  bool flag_a = false, flag_b = false;
  const absl::Time deadline = clock.Now() + absl::Minutes(1);
  bool result_a = true, result_b = true;
  std::thread a([&] {
    absl::MutexLock lock(&mu_a);
    result_a = clock.AwaitWithDeadline(&mu_a, absl::Condition(&flag_a), deadline);
  });
  std::thread b([&] {
    absl::MutexLock lock(&mu_b);
    result_b = clock.AwaitWithDeadline(&mu_b, absl::Condition(&flag_b), deadline);
  });
  WaitForWaiters(clock, 2);
  clock.Advance(absl::Minutes(2));
  a.join();
  b.join();
  EXPECT_FALSE(result_a);
  EXPECT_FALSE(result_b);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, WaitersOnOneMutexWithDifferentDeadlines) {
  FakeClock clock;
  absl::Mutex mu;
  bool flag = false;
  const absl::Time t0 = clock.Now();
  std::atomic<int> done{0};
  bool early_result = true, late_result = true;
  std::thread early([&] {
    absl::MutexLock lock(&mu);
    early_result =
        clock.AwaitWithDeadline(&mu, absl::Condition(&flag), t0 + absl::Seconds(1));
    ++done;
  });
  std::thread late([&] {
    absl::MutexLock lock(&mu);
    late_result =
        clock.AwaitWithDeadline(&mu, absl::Condition(&flag), t0 + absl::Hours(1));
    ++done;
  });
  WaitForWaiters(clock, 2);
  clock.Advance(absl::Seconds(2));
  early.join();
  EXPECT_FALSE(early_result);
  EXPECT_EQ(done.load(), 1);
  EXPECT_EQ(clock.waiters(), 1);  // the late waiter is still inside
  {
    absl::MutexLock lock(&mu);
    flag = true;
  }
  late.join();
  EXPECT_TRUE(late_result);
  EXPECT_EQ(clock.waiters(), 0);
}

}  // namespace
}  // namespace duet
