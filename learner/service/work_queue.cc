#include "learner/service/work_queue.h"

#include <glog/logging.h>

#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace duet {
namespace {

// How often waiting Await and AwaitWorkers calls look for silent workers.
constexpr absl::Duration kExpirySlice = absl::Seconds(1);
// Calls look for silent workers and overdue items at most this often (each look visits
// every worker and item in flight).
constexpr absl::Duration kExpiryGap = absl::Milliseconds(100);

// 128 random bits from the OS (std::random_device reads /dev/urandom), as hex.
std::string NewSession() {
  std::random_device os;
  std::string out;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&out, absl::Hex(os(), absl::kZeroPad8));
  return out;
}

// Compares in time independent of where the strings differ.
bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

WorkQueue::WorkQueue(std::string run_id, Clock* clock, int32_t max_workers,
                     absl::Duration lease)
    : run_id_(std::move(run_id)),
      clock_(clock),
      max_workers_(max_workers),
      lease_(lease) {}

void WorkQueue::TouchLocked(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it != workers_.end()) it->second.last_seen = clock_->Now();
}

void WorkQueue::RemoveWorkerLocked(std::map<std::string, WorkerRecord>::iterator it,
                                   bool lost) {
  const std::string id = it->first;
  const v1::Role role = it->second.role;
  PokeLocked();  // its waiting pull ends, and items may come free
  workers_.erase(it);
  --role_workers_[role];
  polling_.erase(id);
  ++membership_version_;
  if (lost) {
    ++counters_.workers_lost;
    lost_.insert(id);
  } else {
    ++counters_.workers_left;
  }
  if (metrics_) metrics_->OnWorkerGone(id, lost);
  auto fail = [&](const v1::WorkItem& item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::CompleteWorkRequest r;
    r.set_worker_id(id);
    r.set_item_id(item.item_id());
    r.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kUnavailable));
    r.mutable_error()->set_message(absl::StrCat(
        "worker '", id,
        lost ? "' was lost (silent for longer than its lease)" : "' left the run"));
    results_[item.item_id()] = std::move(r);
  };
  // Items addressed to it cannot go to anyone else: they fail. Queued role items stay.
  for (auto p = pending_.begin(); p != pending_.end();) {
    if (p->worker_id == id) {
      fail(p->item);
      p = pending_.erase(p);
    } else {
      ++p;
    }
  }
  // Items it held: role items go back to the front of the queue, addressed ones fail.
  for (auto f = in_flight_.begin(); f != in_flight_.end();) {
    if (f->second.worker_id != id) {
      ++f;
      continue;
    }
    if (f->second.item.has_sync()) {
      fail(f->second.item);
    } else {
      pending_.push_front(Pending{role, "", std::move(f->second.item),
                                  f->second.deadline_span, std::move(f->second.avoid)});
      ++counters_.items_reissued;
    }
    f = in_flight_.erase(f);
  }
}

void WorkQueue::ChargeErrorLocked(std::map<std::string, WorkerRecord>::iterator it,
                                  const std::string& why) {
  WorkerRecord& w = it->second;
  ++w.errors;
  ++w.consecutive_errors;
  ++counters_.errors_charged;
  if (metrics_) metrics_->OnWorkerError(w.id);
  LOG(WARNING) << "worker " << w.id << ": error " << w.consecutive_errors
               << " in a row charged: " << why;
  if (fault_policy_.quarantine_after <= 0 ||
      w.consecutive_errors < fault_policy_.quarantine_after)
    return;
  bool other = false;
  for (const auto& [id, o] : workers_) other = other || (id != w.id && o.role == w.role);
  if (!other) return;  // the only worker of its role: the items' own bounds decide
  const std::string key = w.name.empty() ? w.id : w.name;
  quarantined_[key] = clock_->Now() + fault_policy_.cooldown;
  ++counters_.workers_quarantined;
  LOG(WARNING) << "worker " << w.id << " quarantined for "
               << absl::FormatDuration(fault_policy_.cooldown) << " after "
               << w.consecutive_errors << " errors in a row (last: " << why
               << "); its items go to others";
  if (metrics_) metrics_->OnQuarantine(w.id);
  RemoveWorkerLocked(it, /*lost=*/true);
}

void WorkQueue::ExpireItemsLocked() {
  const absl::Time now = clock_->Now();
  std::vector<std::string> expired;
  for (const auto& [item_id, f] : in_flight_) {
    if (f.deadline <= now) expired.push_back(item_id);
  }
  for (const std::string& item_id : expired) {
    auto f = in_flight_.find(item_id);
    const std::string holder = f->second.worker_id;
    v1::CompleteWorkRequest r;
    r.set_worker_id(holder);
    r.set_item_id(item_id);
    r.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kDeadlineExceeded));
    const std::string why =
        absl::StrCat("worker '", holder, "' held item ", item_id, " past its deadline (",
                     absl::FormatDuration(f->second.deadline_span), ")");
    r.mutable_error()->set_message(why);
    in_flight_.erase(f);
    ++counters_.items_timed_out;
    if (metrics_) metrics_->OnItemTimeout(item_id);
    results_[item_id] = std::move(r);
    auto w = workers_.find(holder);
    if (w != workers_.end()) ChargeErrorLocked(w, why);
  }
}

void WorkQueue::ExpireLocked() {
  const absl::Time now = clock_->Now();
  if (now - last_expiry_ < kExpiryGap) return;
  last_expiry_ = now;
  ExpireItemsLocked();
  if (lease_ <= absl::ZeroDuration()) return;
  for (auto it = workers_.begin(); it != workers_.end();) {
    auto next = std::next(it);
    // A worker with a Pull waiting is in contact even while it waits.
    if (now - it->second.last_seen > lease_ && polling_.count(it->first) == 0) {
      LOG(WARNING) << "worker " << it->first << " lost: silent for "
                   << absl::FormatDuration(now - it->second.last_seen);
      RemoveWorkerLocked(it, /*lost=*/true);
    }
    it = next;
  }
}

bool WorkQueue::AwaitExpiringLocked(const absl::Condition& condition,
                                    absl::Duration timeout) {
  const absl::Time deadline = clock_->Now() + timeout;
  for (;;) {
    if (condition.Eval()) return true;
    if (clock_->Now() >= deadline) return false;
    clock_->AwaitWithDeadline(&mu_, condition,
                              std::min(deadline, clock_->Now() + kExpirySlice));
    ExpireLocked();
  }
}

void WorkQueue::SetFaultPolicy(const FaultPolicy& policy) {
  absl::MutexLock lock(&mu_);
  fault_policy_ = policy;
}

absl::Status WorkQueue::Authenticate(const std::string& worker_id,
                                     const std::string& session) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("unknown worker '", worker_id,
                     "' (lost, quarantined or never registered): register again"));
  }
  if (!SameSecret(it->second.session, session)) {
    return absl::PermissionDeniedError(
        absl::StrCat("session: not the one registered for worker '", worker_id, "'"));
  }
  return absl::OkStatus();
}

void WorkQueue::NoteLateResult(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  if (workers_.count(worker_id) > 0 || lost_.count(worker_id) == 0) return;
  ++counters_.late_results_refused;
  if (metrics_) metrics_->OnLateResult(worker_id);
}

bool WorkQueue::AllRegistered(const std::set<std::string>& workers) const {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : workers) {
    if (workers_.count(id) == 0) return false;
  }
  return true;
}

bool WorkQueue::AllWorkersIn(v1::Role role, const std::set<std::string>& workers) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, w] : workers_) {
    if (w.role == role && workers.count(id) == 0) return false;
  }
  return true;
}

std::vector<std::string> WorkQueue::ExpireSilentWorkers() {
  absl::MutexLock lock(&mu_);
  const std::set<std::string> before = lost_;
  ExpireLocked();
  std::vector<std::string> out;
  for (const auto& id : lost_) {
    if (before.count(id) == 0) out.push_back(id);
  }
  return out;
}

absl::Status WorkQueue::Heartbeat(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  if (workers_.count(worker_id) == 0) {
    return absl::NotFoundError(
        absl::StrCat("unknown worker '", worker_id, "': register again"));
  }
  TouchLocked(worker_id);
  ExpireLocked();  // heartbeats go on while the learner is busy elsewhere: so do the
                   // leases
  return absl::OkStatus();
}

absl::Status WorkQueue::Deregister(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end())
    return absl::NotFoundError(absl::StrCat("unknown worker '", worker_id, "'"));
  RemoveWorkerLocked(it, /*lost=*/false);
  return absl::OkStatus();
}

void WorkQueue::SetRanks(const std::map<std::string, int32_t>& ranks) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, w] : workers_) {
    auto r = ranks.find(id);
    w.rank = r == ranks.end() ? -1 : r->second;
  }
}

WorkQueue::Counters WorkQueue::counters() const {
  absl::MutexLock lock(&mu_);
  return counters_;
}

int64_t WorkQueue::membership_version() const {
  absl::MutexLock lock(&mu_);
  return membership_version_;
}

absl::StatusOr<WorkerRecord> WorkQueue::Register(v1::Role role, const std::string& name,
                                                 int32_t capacity) {
  absl::MutexLock lock(&mu_);
  ExpireLocked();  // seats of silent workers are free again
  if (static_cast<int64_t>(workers_.size()) >= max_workers_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the run has its ", max_workers_, " workers; retry when one has left"));
  }
  const absl::Time now = clock_->Now();
  for (auto q = quarantined_.begin(); q != quarantined_.end();) {
    q = q->second <= now ? quarantined_.erase(q) : std::next(q);
  }
  if (auto q = quarantined_.find(name); !name.empty() && q != quarantined_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker '", name, "' is quarantined for another ",
                     absl::FormatDuration(q->second - now),
                     " after repeated errors (see the learner's log)"));
  }
  WorkerRecord w;
  w.role = role;
  w.name = name;
  w.capacity = capacity;
  // The id is the worker's name when it has a usable one (logs then match the process
  // that the operator named), made unique with a suffix; else role-N.
  const bool usable = !name.empty() && name.size() <= 64 &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                               c == '-' || c == '_' || c == '.' || c == ':';
                      });
  const std::string base =
      usable ? name
             : absl::StrCat(role == v1::ROLE_ROLLOUT ? "rollout-" : "scorer-",
                            next_worker_index_[role]++);
  std::string id = base;
  for (int n = 2; workers_.count(id) > 0; ++n) id = absl::StrCat(base, "-", n);
  w.id = id;
  w.last_seen = now;
  w.session = NewSession();
  workers_[w.id] = w;
  ++role_workers_[role];
  ++membership_version_;
  if (metrics_) metrics_->OnRegister(w.id, role);
  return w;
}

std::vector<WorkerRecord> WorkQueue::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

int WorkQueue::CountWorkers(v1::Role role) const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [id, w] : workers_) n += w.role == role ? 1 : 0;
  return n;
}

absl::Status WorkQueue::AwaitWorkers(v1::Role role, int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, role, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return true;
    const auto n = role_workers_.find(role);
    return n != role_workers_.end() && n->second >= count;
  };
  if (!AwaitExpiringLocked(absl::Condition(&ready), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("waited ", absl::FormatDuration(timeout), " for ", count, " ",
                     v1::Role_Name(role), " workers"));
  }
  if (closed_) return absl::CancelledError("run is shutting down");
  return absl::OkStatus();
}

std::string WorkQueue::Submit(v1::Role role, v1::WorkItem item,
                              const std::string& worker_id) {
  SubmitOptions options;
  options.worker_id = worker_id;
  return Submit(role, std::move(item), std::move(options));
}

std::string WorkQueue::Submit(v1::Role role, v1::WorkItem item, SubmitOptions options) {
  absl::MutexLock lock(&mu_);
  const std::string id = absl::StrCat(run_id_, "-", next_item_++);
  item.set_item_id(id);
  if (metrics_) metrics_->OnSubmit(id, role, item.has_sync());
  PokeLocked();
  pending_.push_back(Pending{role, std::move(options.worker_id), std::move(item),
                             options.deadline, std::move(options.avoid)});
  return id;
}

bool WorkQueue::MayTakeLocked(const Pending& p, const std::string& worker_id,
                              v1::Role role) const {
  if (!p.worker_id.empty()) return p.worker_id == worker_id;
  if (p.role != role) return false;
  if (p.avoid.count(worker_id) == 0) return true;
  for (const auto& [id, w] : workers_) {
    if (w.role == role && p.avoid.count(id) == 0)
      return false;  // someone else can try it
  }
  return true;
}

absl::StatusOr<v1::Role> WorkQueue::BeginPullLocked(const std::string& worker_id) {
  TouchLocked(worker_id);
  ExpireLocked();
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("unknown worker '", worker_id, "': register again"));
  }
  if (polling_.count(worker_id) > 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "worker '", worker_id, "' already has a PullWork waiting: one at a time"));
  }
  for (const auto& [item_id, held] : in_flight_) {
    if (held.worker_id == worker_id && !closed_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("worker '", worker_id, "' holds item ", item_id,
                       ": complete it before pulling another"));
    }
  }
  it->second.pulled = true;
  polling_.insert(worker_id);
  if (metrics_) metrics_->OnPullBegin(worker_id);
  return it->second.role;
}

bool WorkQueue::PullReadyLocked(const std::string& worker_id, v1::Role role) const {
  if (closed_ || workers_.count(worker_id) == 0) return true;
  for (const Pending& p : pending_) {
    if (MayTakeLocked(p, worker_id, role)) return true;
  }
  return false;
}

absl::StatusOr<std::optional<v1::WorkItem>> WorkQueue::EndPullLocked(
    const std::string& worker_id, v1::Role role, absl::Time pull_start) {
  polling_.erase(worker_id);
  TouchLocked(worker_id);
  if (workers_.count(worker_id) == 0 && !closed_) {  // deregistered while it waited
    if (metrics_) metrics_->OnPullEnd(worker_id, clock_->Now() - pull_start, "");
    return absl::NotFoundError(absl::StrCat("worker '", worker_id, "' left the run"));
  }
  if (closed_) {
    if (metrics_) metrics_->OnPullEnd(worker_id, clock_->Now() - pull_start, "");
    told_shutdown_.insert(worker_id);
    return absl::CancelledError("run is shutting down");
  }
  // Items addressed to this worker first (weight syncs), then the oldest of its role.
  auto pick = pending_.end();
  for (auto p = pending_.begin(); p != pending_.end(); ++p) {
    if (p->worker_id == worker_id) {
      pick = p;
      break;
    }
    if (pick == pending_.end() && MayTakeLocked(*p, worker_id, role)) pick = p;
  }
  if (pick == pending_.end()) {
    if (metrics_) metrics_->OnPullEnd(worker_id, clock_->Now() - pull_start, "");
    return std::optional<v1::WorkItem>();
  }
  if (metrics_)
    metrics_->OnPullEnd(worker_id, clock_->Now() - pull_start, pick->item.item_id());
  v1::WorkItem item = std::move(pick->item);
  const absl::Duration span = pick->deadline;
  const absl::Time deadline =
      span > absl::ZeroDuration() ? clock_->Now() + span : absl::InfiniteFuture();
  in_flight_[item.item_id()] =
      InFlight{worker_id, item, role, deadline, span, std::move(pick->avoid)};
  pending_.erase(pick);
  return std::optional<v1::WorkItem>(std::move(item));
}

absl::StatusOr<std::optional<v1::WorkItem>> WorkQueue::Pull(const std::string& worker_id,
                                                            absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  DUET_ASSIGN_OR_RETURN(const v1::Role role, BeginPullLocked(worker_id));
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return PullReadyLocked(worker_id, role);
  };
  const absl::Time pull_start = clock_->Now();
  clock_->AwaitWithDeadline(&mu_, absl::Condition(&ready), clock_->Now() + timeout);
  return EndPullLocked(worker_id, role, pull_start);
}

void WorkQueue::PullAsync(const std::string& worker_id, absl::Duration timeout,
                          PullDone done) {
  absl::StatusOr<std::optional<v1::WorkItem>> now;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<v1::Role> role = BeginPullLocked(worker_id);
    if (!role.ok()) {
      now = role.status();
    } else if (timeout <= absl::ZeroDuration() || PullReadyLocked(worker_id, *role)) {
      now = EndPullLocked(worker_id, *role, clock_->Now());
    } else {
      const absl::Time start = clock_->Now();
      const absl::Time deadline = start + timeout;
      if (by_deadline_.empty() || deadline < by_deadline_.begin()->first) {
        earlier_deadline_ = true;  // the dispatcher must wake sooner than it planned
      }
      waiters_.push_back(Waiter{worker_id, *role, start, deadline, std::move(done)});
      by_deadline_.emplace(deadline, std::prev(waiters_.end()));
      if (!dispatcher_.joinable()) dispatcher_ = std::thread([this] { DispatchLoop(); });
      return;
    }
  }
  done(std::move(now));
}

int WorkQueue::waiting_pulls() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiters_.size());
}

void WorkQueue::DispatchLoop() {
  using Answer = std::pair<PullDone, absl::StatusOr<std::optional<v1::WorkItem>>>;
  mu_.Lock();
  for (;;) {
    const absl::Time next =
        by_deadline_.empty() ? absl::InfiniteFuture() : by_deadline_.begin()->first;
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return poked_ || earlier_deadline_ || stopping_;
    };
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&woken), next);
    earlier_deadline_ = false;
    std::vector<Answer> answers;
    // Takes `w` out of both indexes with its answer; the next waiter in arrival order.
    auto answer = [&](std::list<Waiter>::iterator w,
                      absl::StatusOr<std::optional<v1::WorkItem>> result)
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                        auto [first, last] = by_deadline_.equal_range(w->deadline);
                        for (auto d = first; d != last; ++d) {
                          if (d->second == w) {
                            by_deadline_.erase(d);
                            break;
                          }
                        }
                        answers.emplace_back(std::move(w->done), std::move(result));
                        return waiters_.erase(w);
                      };
    const absl::Time now = clock_->Now();
    if (stopping_) {
      for (auto w = waiters_.begin(); w != waiters_.end();) {
        polling_.erase(w->worker_id);
        w = answer(w, absl::CancelledError("the learner is shutting down"));
      }
    } else if (poked_) {
      // Something changed: every waiter that can be answered is, oldest first, each
      // seeing what those before it took.
      poked_ = false;
      for (auto w = waiters_.begin(); w != waiters_.end();) {
        if (now >= w->deadline || PullReadyLocked(w->worker_id, w->role)) {
          w = answer(w, EndPullLocked(w->worker_id, w->role, w->start));
        } else {
          ++w;
        }
      }
    } else {
      // Only time passed: the waiters whose wait is over get "nothing yet".
      while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
        const auto w = by_deadline_.begin()->second;
        answer(w, EndPullLocked(w->worker_id, w->role, w->start));
      }
    }
    if (!answers.empty()) {
      mu_.Unlock();
      for (Answer& a : answers) a.first(std::move(a.second));
      mu_.Lock();
    }
    if (stopping_ && waiters_.empty()) break;
  }
  mu_.Unlock();
}

absl::Status WorkQueue::Complete(const v1::CompleteWorkRequest& result,
                                 const ResultCheck& check) {
  absl::MutexLock lock(&mu_);
  TouchLocked(result.worker_id());
  ExpireLocked();
  if (workers_.count(result.worker_id()) == 0) {
    if (lost_.count(result.worker_id()) > 0) {
      ++counters_.late_results_refused;
      if (metrics_) metrics_->OnLateResult(result.worker_id());
    }
    return absl::NotFoundError(absl::StrCat(
        "unknown worker '", result.worker_id(),
        "' (lost or never registered): its items went to others; register again"));
  }
  auto it = in_flight_.find(result.item_id());
  if (it == in_flight_.end()) {
    if (metrics_) metrics_->OnComplete(result, absl::NotFoundError("not in flight"));
    return absl::NotFoundError(
        absl::StrCat("item '", result.item_id(), "' is not in flight (unknown or done)"));
  }
  if (it->second.worker_id != result.worker_id()) {
    return absl::PermissionDeniedError(absl::StrCat("item '", result.item_id(),
                                                    "' is held by another worker than '",
                                                    result.worker_id(), "'"));
  }
  if (check) DUET_RETURN_IF_ERROR(check(it->second.item, result));
  const bool work_item = !it->second.item.has_sync();
  auto w = workers_.find(result.worker_id());
  ++w->second.items_completed;
  if (result.has_sync()) {
    w->second.confirmed_version = result.sync().version();
    w->second.confirmed_checksum = result.sync().checksum();
  }
  in_flight_.erase(it);
  results_[result.item_id()] = result;
  if (metrics_) metrics_->OnComplete(result, absl::OkStatus());
  // Rollout and score errors count against the worker; a failed weight sync does not (an
  // epoch fails for all its members when one of them fails it).
  if (work_item && result.has_error()) {
    ChargeErrorLocked(
        w, absl::StrCat("item ", result.item_id(), ": ",
                        absl::StatusCodeToString(
                            static_cast<absl::StatusCode>(result.error().code())),
                        ": ", result.error().message()));
  } else if (work_item) {
    w->second.consecutive_errors = 0;
  }
  return absl::OkStatus();
}

std::vector<std::optional<v1::CompleteWorkRequest>> WorkQueue::WaitAndTakeLocked(
    const std::vector<std::string>& item_ids, absl::Duration timeout, bool drop_missing) {
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return true;
    for (const auto& id : item_ids) {
      if (results_.count(id) == 0) return false;
    }
    return true;
  };
  AwaitExpiringLocked(absl::Condition(&done), timeout);
  std::vector<std::optional<v1::CompleteWorkRequest>> out;
  for (const auto& id : item_ids) {
    auto r = results_.find(id);
    if (r != results_.end()) {
      out.emplace_back(std::move(r->second));
      results_.erase(r);
      continue;
    }
    out.emplace_back(std::nullopt);
    if (closed_ || !drop_missing) continue;
    // Nobody waits for this item any more: drop it wherever it is, so that a late result
    // is refused (NotFound) instead of being kept forever.
    pending_.erase(
        std::remove_if(pending_.begin(), pending_.end(),
                       [&](const Pending& p) { return p.item.item_id() == id; }),
        pending_.end());
    in_flight_.erase(id);
    if (metrics_) metrics_->OnDrop(id);
  }
  return out;
}

absl::StatusOr<std::vector<v1::CompleteWorkRequest>> WorkQueue::Await(
    const std::vector<std::string>& item_ids, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  std::vector<std::optional<v1::CompleteWorkRequest>> got =
      WaitAndTakeLocked(item_ids, timeout);
  if (closed_) return absl::CancelledError("run is shutting down");
  const int64_t missing = std::count(got.begin(), got.end(), std::nullopt);
  if (missing > 0) {
    return absl::DeadlineExceededError(absl::StrCat(missing, " of ", item_ids.size(),
                                                    " work items unfinished after ",
                                                    absl::FormatDuration(timeout)));
  }
  std::vector<v1::CompleteWorkRequest> out;
  for (auto& r : got) out.push_back(std::move(*r));
  return out;
}

absl::StatusOr<std::vector<std::optional<v1::CompleteWorkRequest>>>
WorkQueue::AwaitWithin(const std::vector<std::string>& item_ids, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  std::vector<std::optional<v1::CompleteWorkRequest>> got =
      WaitAndTakeLocked(item_ids, timeout);
  if (closed_) return absl::CancelledError("run is shutting down");
  return got;
}

absl::StatusOr<std::vector<std::optional<v1::CompleteWorkRequest>>> WorkQueue::TakeWithin(
    const std::vector<std::string>& item_ids, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  std::vector<std::optional<v1::CompleteWorkRequest>> got =
      WaitAndTakeLocked(item_ids, timeout, /*drop_missing=*/false);
  if (closed_) return absl::CancelledError("run is shutting down");
  return got;
}

absl::Status WorkQueue::Evict(const std::string& worker_id, const std::string& why) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end())
    return absl::NotFoundError(absl::StrCat("unknown worker '", worker_id, "'"));
  LOG(WARNING) << "worker " << worker_id << " dropped from the run: " << why;
  RemoveWorkerLocked(it, /*lost=*/true);
  return absl::OkStatus();
}

int64_t WorkQueue::items_held() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(pending_.size() + in_flight_.size() + results_.size());
}

bool WorkQueue::AwaitShutdownNoticed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto all_told = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, w] : workers_) {
      if (told_shutdown_.count(id) == 0) return false;
    }
    return true;
  };
  return clock_->AwaitWithDeadline(&mu_, absl::Condition(&all_told),
                                   clock_->Now() + timeout);
}

void WorkQueue::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  PokeLocked();
}

WorkQueue::~WorkQueue() {
  std::thread dispatcher;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    dispatcher = std::move(dispatcher_);
  }
  if (dispatcher.joinable()) dispatcher.join();
}

bool WorkQueue::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

}  // namespace duet
