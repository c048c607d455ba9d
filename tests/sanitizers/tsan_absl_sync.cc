// ThreadSanitizer support for Debian's uninstrumented Abseil (linked into the TSan
// build's test binaries only; tests/sanitizers.sh). libabsl_synchronization.so is
// compiled without TSan, so its Mutex, CondVar and Notification establish no
// happens-before edge that TSan can see: every access guarded by an absl::Mutex would be
// reported as a race. This file defines the entry points Duet and gRPC call (Lock,
// Unlock, Await, CondVar::Wait, Notification::Notify, ...); a definition in the
// executable interposes the shared library's for every caller, gRPC's included. Each
// calls the library's own function (dlsym RTLD_NEXT) and tells TSan about the edge with
// __tsan_release before giving a mutex up and __tsan_acquire after taking it. Reader
// locks are treated like writer locks (more edges than the truth: a real race between two
// readers is not reported); lock-order checking is not emulated.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define DUET_STR2(x) #x
#define DUET_STR(x) DUET_STR2(x)

// The Itanium mangled name of absl::<inline namespace>::<cls>::<rest>.
std::string Mangled(const char* prefix, const char* cls, const char* rest) {
  const std::string ns = DUET_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string c = cls;
  return std::string(prefix) + "4absl" + std::to_string(ns.size()) + ns +
         std::to_string(c.size()) + c + rest;
}

template <typename F>
F Real(const char* prefix, const char* cls, const char* rest) {
  const std::string name = Mangled(prefix, cls, rest);
  void* f = dlsym(RTLD_NEXT, name.c_str());
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found in the Abseil library\n",
                 name.c_str());
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Notification;
using absl::Time;

// absl evaluates a Condition while the mutex is held, but inside the library: at the
// waiter's entry to Await/LockWhen, after it wakes, and in other threads' Unlock. Each
// evaluation reads state that other threads write under the mutex, so it is wrapped in an
// acquire and a release of the mutex for TSan (harmless where the thread already holds it
// in TSan's view).
struct Guarded {
  Mutex* mu;
  const Condition* cond;
};
bool EvalAcquired(Guarded* g) {
  __tsan_acquire(g->mu);
  const bool met = g->cond->Eval();
  __tsan_release(g->mu);  // the reads happen before the next holder's writes
  return met;
}

}  // namespace

#define DUET_REAL(type, prefix, cls, rest) \
  static const auto real = Real<type>(prefix, cls, rest)

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  DUET_REAL(void (*)(Mutex*), "_ZN", "Mutex", "4LockEv");
  real(this);
  __tsan_acquire(this);
}
void Mutex::ReaderLock() {
  DUET_REAL(void (*)(Mutex*), "_ZN", "Mutex", "10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}
bool Mutex::TryLock() {
  DUET_REAL(bool (*)(Mutex*), "_ZN", "Mutex", "7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
bool Mutex::ReaderTryLock() {
  DUET_REAL(bool (*)(Mutex*), "_ZN", "Mutex", "13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
void Mutex::Unlock() {
  DUET_REAL(void (*)(Mutex*), "_ZN", "Mutex", "6UnlockEv");
  __tsan_release(this);
  real(this);
}
void Mutex::ReaderUnlock() {
  DUET_REAL(void (*)(Mutex*), "_ZN", "Mutex", "12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}
void Mutex::LockWhen(const Condition& cond) {
  DUET_REAL(void (*)(Mutex*, const Condition&), "_ZN", "Mutex",
            "8LockWhenERKNS0_9ConditionE");
  Guarded guarded{this, &cond};
  real(this, Condition(&EvalAcquired, &guarded));
  __tsan_acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  DUET_REAL(void (*)(Mutex*, const Condition&), "_ZN", "Mutex",
            "14ReaderLockWhenERKNS0_9ConditionE");
  Guarded guarded{this, &cond};
  real(this, Condition(&EvalAcquired, &guarded));
  __tsan_acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  DUET_REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN", "Mutex",
            "19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Guarded guarded{this, &cond};
  const bool met = real(this, Condition(&EvalAcquired, &guarded), timeout);
  __tsan_acquire(this);  // held on return either way
  return met;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  DUET_REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN", "Mutex",
            "20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Guarded guarded{this, &cond};
  const bool met = real(this, Condition(&EvalAcquired, &guarded), deadline);
  __tsan_acquire(this);
  return met;
}
// Await releases the mutex while it waits and holds it again on return.
void Mutex::Await(const Condition& cond) {
  DUET_REAL(void (*)(Mutex*, const Condition&), "_ZN", "Mutex",
            "5AwaitERKNS0_9ConditionE");
  Guarded guarded{this, &cond};
  __tsan_release(this);
  real(this, Condition(&EvalAcquired, &guarded));
  __tsan_acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  DUET_REAL(bool (*)(Mutex*, const Condition&, Duration), "_ZN", "Mutex",
            "16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Guarded guarded{this, &cond};
  __tsan_release(this);
  const bool met = real(this, Condition(&EvalAcquired, &guarded), timeout);
  __tsan_acquire(this);
  return met;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  DUET_REAL(bool (*)(Mutex*, const Condition&, Time), "_ZN", "Mutex",
            "17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Guarded guarded{this, &cond};
  __tsan_release(this);
  const bool met = real(this, Condition(&EvalAcquired, &guarded), deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  DUET_REAL(void (*)(CondVar*, Mutex*), "_ZN", "CondVar", "4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  DUET_REAL(bool (*)(CondVar*, Mutex*, Duration), "_ZN", "CondVar",
            "15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  DUET_REAL(bool (*)(CondVar*, Mutex*, Time), "_ZN", "CondVar",
            "16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool timed_out = real(this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

void Notification::Notify() {
  DUET_REAL(void (*)(Notification*), "_ZN", "Notification", "6NotifyEv");
  __tsan_release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  DUET_REAL(void (*)(const Notification*), "_ZNK", "Notification",
            "19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  DUET_REAL(bool (*)(const Notification*, Duration), "_ZNK", "Notification",
            "30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
