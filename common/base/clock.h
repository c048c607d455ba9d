#ifndef DUET_COMMON_BASE_CLOCK_H_
#define DUET_COMMON_BASE_CLOCK_H_

// Time as an injected dependency (LevelDB's Env in spirit): everything in Duet that
// waits, times out or sleeps takes a Clock*, so that tests drive time with FakeClock
// instead of sleeping.
//
// Thread-safety: both implementations are thread-safe.

#include <atomic>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace duet {

class Clock {
 public:
  virtual ~Clock() = default;

  virtual absl::Time Now() const = 0;

  // Returns after `duration` of this clock's time has passed.
  virtual void SleepFor(absl::Duration duration) = 0;

  // Waits until `condition` holds or this clock reaches `deadline`; returns whether the
  // condition holds. REQUIRES: `mu` is held (it is released while waiting, as
  // absl::Mutex::AwaitWithDeadline does).
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                                 absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;
};

// The process's real clock (absl::Now, absl::SleepFor). Never null; lives forever.
Clock* RealClock();

// A clock that moves only when told. SleepFor advances it by the duration (simulated
// time: nothing blocks), Advance moves it and wakes every AwaitWithDeadline whose
// deadline has come.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24));

  absl::Time Now() const override;
  void SleepFor(absl::Duration duration) override;
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                         absl::Time deadline) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Moves the clock forward and wakes the waiters it concerns.
  void Advance(absl::Duration duration);
  // How many callers are inside AwaitWithDeadline now (tests wait for a waiter to block
  // before they advance the clock).
  int waiters() const;
  // How many AwaitWithDeadline calls have begun so far (a waiter that an Advance woke and
  // that waits again has begun one more: tests tell "waiting again" from "not yet
  // woken").
  int64_t waits_begun() const;

 private:
  std::atomic<int64_t> now_ns_;     // read inside waiters' conditions
  mutable absl::Mutex waiters_mu_;  // guards waiters_
  std::map<absl::Mutex*, int> waiters_
      ABSL_GUARDED_BY(waiters_mu_);  // mutex -> waiting count
  int64_t waits_begun_ ABSL_GUARDED_BY(waiters_mu_) = 0;
};

}  // namespace duet

#endif  // DUET_COMMON_BASE_CLOCK_H_
