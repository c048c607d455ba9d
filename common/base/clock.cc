#include "common/base/clock.h"

#include <vector>

namespace duet {
namespace {

class RealClockImpl final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  void SleepFor(absl::Duration duration) override { absl::SleepFor(duration); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                         absl::Time deadline) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return mu->AwaitWithDeadline(condition, deadline);
  }
};

}  // namespace

Clock* RealClock() {
  static RealClockImpl* const clock = new RealClockImpl();
  return clock;
}

FakeClock::FakeClock(absl::Time start) : now_ns_(absl::ToUnixNanos(start)) {}

absl::Time FakeClock::Now() const { return absl::FromUnixNanos(now_ns_.load()); }

void FakeClock::SleepFor(absl::Duration duration) { Advance(duration); }

bool FakeClock::AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& condition,
                                  absl::Time deadline) {
  const int64_t deadline_ns = absl::ToUnixNanos(deadline);
  {
    absl::MutexLock lock(&waiters_mu_);
    ++waiters_[mu];
    ++waits_begun_;
  }
  struct Args {
    const absl::Condition* condition;
    const std::atomic<int64_t>* now_ns;
    int64_t deadline_ns;
  } args{&condition, &now_ns_, deadline_ns};
  mu->Await(absl::Condition(
      +[](Args* a) {
        return a->condition->Eval() || a->now_ns->load() >= a->deadline_ns;
      },
      &args));
  {
    absl::MutexLock lock(&waiters_mu_);
    if (--waiters_[mu] == 0) waiters_.erase(mu);
  }
  return condition.Eval();
}

void FakeClock::Advance(absl::Duration duration) {
  now_ns_.fetch_add(absl::ToInt64Nanoseconds(duration));
  std::vector<absl::Mutex*> mus;
  {
    absl::MutexLock lock(&waiters_mu_);
    for (const auto& [mu, count] : waiters_) mus.push_back(mu);
  }
  // Releasing a mutex makes absl re-evaluate its waiters' conditions.
  for (absl::Mutex* mu : mus) {
    mu->Lock();
    mu->Unlock();
  }
}

int FakeClock::waiters() const {
  absl::MutexLock lock(&waiters_mu_);
  int n = 0;
  for (const auto& [mu, count] : waiters_) n += count;
  return n;
}

int64_t FakeClock::waits_begun() const {
  absl::MutexLock lock(&waiters_mu_);
  return waits_begun_;
}

}  // namespace duet
