#ifndef DUET_LEARNER_SERVICE_WORK_QUEUE_H_
#define DUET_LEARNER_SERVICE_WORK_QUEUE_H_

// The learner's dispatch state: registered workers, work items waiting for a worker of
// their role (or for one worker in particular), items in flight, and results. Workers
// pull; the training thread submits items and awaits their results.
//
// Completing an item twice counts once: the first result is kept, later ones are
// refused.
//
// Liveness (leases): a worker is alive while it calls in (Register, Pull, Complete,
// Heartbeat) at least once per `lease`. One silent for longer is lost: it leaves the
// registry (its id is unknown from then on, NotFound, so it must register again), each
// item it held goes back to the front of the queue for another worker of its role
// (re-issued: items carry their own seeds, so the result is the same), and each item
// addressed to it (a weight sync) completes with an UNAVAILABLE error result. A late
// result from a lost worker is refused and counted. A graceful leave (Deregister) does
// the same at once.
//
// Sessions: Register gives each worker a random session secret; the coordinator checks it
// (Authenticate) before any call in that worker's name, so the run token alone does not
// let one worker heartbeat, pull, complete or deregister for another.
//
// Item deadlines: an item submitted with a deadline that is still in flight when the
// deadline passes is taken back whatever the heartbeats say: it completes with a
// DEADLINE_EXCEEDED error result in its holder's name (charged to the holder, see below),
// and the holder's late result is refused (NotFound).
//
// Quarantine: every error result (and every missed item deadline) is charged to the
// worker that made it. A worker whose consecutive errors reach
// FaultPolicy::quarantine_after is quarantined while another worker of its role is
// registered: it leaves the registry as if lost (its items go to others, its late results
// are refused) and a Register under the same name is refused (FailedPrecondition) for
// FaultPolicy::cooldown. A success resets the count. Items submitted with `avoid` workers
// (those that failed them) go to any other worker of the role first; an avoided worker
// gets one only when it is the only one left.
//
// Thread-safety: thread-safe. Every method may be called from any thread; Pull and
// Await block without holding the mutex. PullAsync never blocks: one dispatcher thread
// answers every waiting PullAsync.

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "duet/v1/coordinator.pb.h"
#include "learner/service/queue_metrics.h"

namespace duet {

struct WorkerRecord {
  std::string id;
  v1::Role role = v1::ROLE_UNSPECIFIED;
  std::string name;
  int32_t capacity = 0;
  int32_t rank = -1;  // c10d rank, -1 without a collective seat
  int64_t confirmed_version = 0;
  uint64_t confirmed_checksum = 0;
  int64_t items_completed = 0;
  absl::Time last_seen;            // last call in; the lease runs from here
  std::string session;             // the secret calls in this worker's name carry
  int64_t errors = 0;              // error results and missed deadlines charged to it
  int32_t consecutive_errors = 0;  // since its last accepted result (quarantine)
  bool pulled =
      false;  // has called PullWork since registering (a broadcast epoch needs it)
};

// How the queue deals with workers that fail (see the class comment).
struct FaultPolicy {
  int32_t quarantine_after = 3;  // consecutive errors; <= 0: never quarantine
  absl::Duration cooldown = absl::Seconds(60);
};

// How Submit queues an item.
struct SubmitOptions {
  std::string worker_id;  // empty: any worker of the role; else only this one
  // Zero: none. Else the item is taken back this long after a worker pulled it.
  absl::Duration deadline = absl::ZeroDuration();
  std::set<std::string> avoid;  // workers that get it only when no other one is there
};

class WorkQueue {
 public:
  // At most `max_workers` may register. Timeouts and leases are measured on `clock` (not
  // owned; outlives the queue). `lease`: see above; zero: workers never expire.
  WorkQueue(std::string run_id, Clock* clock = RealClock(),
            int32_t max_workers = kDefaultMaxWorkers,
            absl::Duration lease = absl::ZeroDuration());

  static constexpr int32_t kDefaultMaxWorkers = 1024;

  // The lease given at construction (zero: workers never expire). Thread-safe (constant).
  absl::Duration lease() const { return lease_; }

  // Sets the quarantine rules. REQUIRES: called before any worker registers.
  void SetFaultPolicy(const FaultPolicy& policy);

  // OK when `session` is the one Register gave `worker_id`. NotFound when the worker is
  // unknown (never registered, lost, quarantined or gone); PermissionDenied when the
  // session does not match. Changes nothing (not even the lease).
  absl::Status Authenticate(const std::string& worker_id,
                            const std::string& session) const;

  // Counts a result refused because `worker_id` is unknown, when it was lost (or
  // quarantined): its late result.
  void NoteLateResult(const std::string& worker_id);

  // Renews `worker_id`'s lease (a worker calls it while it computes a long item).
  // NotFound when the worker is unknown (never registered, or lost).
  absl::Status Heartbeat(const std::string& worker_id);
  // A graceful leave: the worker is removed at once, as if lost. NotFound when unknown.
  absl::Status Deregister(const std::string& worker_id);
  // Declares every worker silent for longer than the lease lost (see above) and returns
  // their ids. Pull, Complete, Await and AwaitWorkers also do it as they go.
  std::vector<std::string> ExpireSilentWorkers();
  // The c10d ranks of the current broadcast epoch: listed workers get theirs, the others
  // -1.
  void SetRanks(const std::map<std::string, int32_t>& ranks);

  struct Counters {
    int64_t workers_lost = 0;          // by lease expiry
    int64_t workers_left = 0;          // by Deregister
    int64_t items_reissued = 0;        // taken back from a lost worker and queued again
    int64_t late_results_refused = 0;  // results from workers that were lost
    int64_t workers_quarantined = 0;
    int64_t items_timed_out = 0;  // taken back at their deadline
    int64_t errors_charged = 0;   // error results and missed deadlines
  };
  Counters counters() const;
  // Changes whenever a worker joins or leaves (registers, is lost, deregisters).
  int64_t membership_version() const;

  // Adds a worker. Its id is `name` when that is 1..64 characters of [A-Za-z0-9._:-]
  // (with
  // "-2", "-3", ... when taken), else "rollout-N" / "scorer-N"; its session is fresh
  // random. ResourceExhausted when `max_workers` are registered already;
  // FailedPrecondition while `name` is quarantined.
  absl::StatusOr<WorkerRecord> Register(v1::Role role, const std::string& name,
                                        int32_t capacity);
  std::vector<WorkerRecord> Workers() const;
  int CountWorkers(v1::Role role) const;
  // Blocks until at least `count` workers of `role` registered (DeadlineExceeded after
  // `timeout`, Cancelled after Close()).
  absl::Status AwaitWorkers(v1::Role role, int count, absl::Duration timeout);

  // Queues `item` (its item_id is assigned and returned) for any worker of `role`, or
  // only for `worker_id` when it is not empty.
  std::string Submit(v1::Role role, v1::WorkItem item, const std::string& worker_id = "");
  // The same, with a deadline and workers to avoid (see the class comment).
  std::string Submit(v1::Role role, v1::WorkItem item, SubmitOptions options);
  // True when every one of `workers` is registered.
  bool AllRegistered(const std::set<std::string>& workers) const;
  // True when every registered worker of `role` is in `workers` (none is left to try an
  // item those failed).
  bool AllWorkersIn(v1::Role role, const std::set<std::string>& workers) const;

  // The next item for `worker_id`, waiting up to `timeout`; nullopt when none arrived.
  // NotFound for an unknown worker; Cancelled after Close(). Backpressure, so that one
  // client cannot make the learner hold more than its share: ResourceExhausted (and
  // nothing changes) while the worker already has a Pull waiting, or already holds an
  // item (a worker works on one item at a time and completes it before pulling again).
  absl::StatusOr<std::optional<v1::WorkItem>> Pull(const std::string& worker_id,
                                                   absl::Duration timeout);

  // Pull without holding a thread while it waits (the coordinator's callback PullWork):
  // `done` gets what Pull would return, exactly once, never under the queue's mutex. On
  // this thread when the answer is known at once (an error, an item, or `timeout` <= 0);
  // otherwise on the queue's dispatcher thread (started by the first such wait) as soon
  // as an item for the worker is queued, the worker leaves, the queue closes, or
  // `timeout` passes. A waiting pull costs a record here, not a thread. `done` may call
  // the queue.
  using PullDone = std::function<void(absl::StatusOr<std::optional<v1::WorkItem>>)>;
  void PullAsync(const std::string& worker_id, absl::Duration timeout, PullDone done);
  // PullAsync calls waiting now.
  int waiting_pulls() const;

  // Checks a result against the item that was handed out (the coordinator's validation).
  using ResultCheck = std::function<absl::Status(const v1::WorkItem& item,
                                                 const v1::CompleteWorkRequest& result)>;

  // Records the result of an item in flight. Nothing changes unless it returns OK:
  //   NotFound: the item is unknown, was completed already (a duplicate) or was taken
  //   back at its deadline;
  //   PermissionDenied: another worker than result.worker_id() holds the item;
  //   what `check` (when set) returns: the item stays in flight for a correct result.
  absl::Status Complete(const v1::CompleteWorkRequest& result,
                        const ResultCheck& check = nullptr);

  // The results of `item_ids`, in order, once all are in. DeadlineExceeded after
  // `timeout`, and then the items are dropped (queued, in flight or done): a late result
  // is NotFound. Cancelled after Close().
  absl::StatusOr<std::vector<v1::CompleteWorkRequest>> Await(
      const std::vector<std::string>& item_ids, absl::Duration timeout);

  // Like Await, but past `timeout` returns what is in (nullopt for the others, which are
  // dropped as by Await's timeout) instead of failing. Cancelled after Close().
  absl::StatusOr<std::vector<std::optional<v1::CompleteWorkRequest>>> AwaitWithin(
      const std::vector<std::string>& item_ids, absl::Duration timeout);

  // Like AwaitWithin, but the items not in by `timeout` stay where they are (queued or in
  // flight), so that a later Await* can still collect them. Returns at once when every
  // result is in. Cancelled after Close().
  absl::StatusOr<std::vector<std::optional<v1::CompleteWorkRequest>>> TakeWithin(
      const std::vector<std::string>& item_ids, absl::Duration timeout);

  // Drops `worker_id` from the run as if lost (its items go to others, its late results
  // are refused; it registers again), logging `why`. NotFound when unknown.
  absl::Status Evict(const std::string& worker_id, const std::string& why);

  // Items queued, in flight and done-but-not-awaited (what the queue holds).
  int64_t items_held() const;

  // Wakes every waiter; Pull and Await return Cancelled from now on.
  void Close();
  // Stops the dispatcher; a PullAsync still waiting gets Cancelled.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;
  // After Close(): waits until every registered worker has pulled and so been told that
  // the run ended, or `timeout` passed. True when all were told.
  bool AwaitShutdownNoticed(absl::Duration timeout);
  bool closed() const;

  // Reports the queue's events to `metrics` (not owned; outlives the queue; null: none).
  // REQUIRES: called before any other method, from the thread that made the queue.
  void SetMetrics(QueueMetrics* metrics) { metrics_ = metrics; }

 private:
  // Pull's checks before it waits: the worker's role, or why it may not pull now (see
  // Pull). On success the worker counts as polling.
  absl::StatusOr<v1::Role> BeginPullLocked(const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when a pull by `worker_id` can be answered now: an item it may take, the queue
  // closed, or the worker gone.
  bool PullReadyLocked(const std::string& worker_id, v1::Role role) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pull's answer once it stops waiting (takes the item, if there is one for it).
  absl::StatusOr<std::optional<v1::WorkItem>> EndPullLocked(const std::string& worker_id,
                                                            v1::Role role,
                                                            absl::Time pull_start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Something a waiting PullAsync may be waiting for changed: the dispatcher looks.
  void PokeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { poked_ = true; }
  // The dispatcher thread: answers each waiting PullAsync once it is ready or due.
  void DispatchLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Removes `it` from the registry and returns its items (see above). `lost`: by expiry.
  void RemoveWorkerLocked(std::map<std::string, WorkerRecord>::iterator it, bool lost)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until `condition` holds (true) or `timeout` passed (false), waking every second
  // to declare silent workers lost (their items go to others meanwhile).
  bool AwaitExpiringLocked(const absl::Condition& condition, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Renews the lease of a known worker.
  void TouchLocked(const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges an error to `it` and quarantines it when the policy says so (then `it` is
  // erased). `why` is for the log.
  void ChargeErrorLocked(std::map<std::string, WorkerRecord>::iterator it,
                         const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until every item of `item_ids` has a result (or Close(), or `timeout`), then
  // takes the results that are in; with `drop_missing` the other items are dropped
  // wherever they are (unless closed), so that a late result is refused.
  std::vector<std::optional<v1::CompleteWorkRequest>> WaitAndTakeLocked(
      const std::vector<std::string>& item_ids, absl::Duration timeout,
      bool drop_missing = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes back the items in flight past their deadline (see the class comment).
  void ExpireItemsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Pending {
    v1::Role role;
    std::string worker_id;  // empty: any worker of the role
    v1::WorkItem item;
    absl::Duration deadline = absl::ZeroDuration();  // from the pull; zero: none
    std::set<std::string> avoid;
  };
  // True when `worker_id` (of `role`) may take `p` now.
  bool MayTakeLocked(const Pending& p, const std::string& worker_id, v1::Role role) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string run_id_;
  Clock* const clock_;
  const int32_t max_workers_;
  const absl::Duration lease_;
  mutable absl::Mutex mu_;  // guards everything below; waiters use mu_'s conditions
  std::map<std::string, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
  // Registered workers per role (what AwaitWorkers' condition reads at every unlock: a
  // count over workers_ there cost O(workers) per call at 10,000 workers).
  std::map<v1::Role, int> role_workers_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  struct InFlight {
    std::string worker_id;
    v1::WorkItem item;
    v1::Role role = v1::ROLE_UNSPECIFIED;
    absl::Time deadline = absl::InfiniteFuture();
    absl::Duration deadline_span = absl::ZeroDuration();  // re-issued items keep it
    std::set<std::string> avoid;
  };
  std::map<std::string, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);  // by item id
  std::map<std::string, v1::CompleteWorkRequest> results_ ABSL_GUARDED_BY(mu_);
  int64_t next_item_ ABSL_GUARDED_BY(mu_) = 0;
  Counters counters_ ABSL_GUARDED_BY(mu_);
  int64_t membership_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> lost_ ABSL_GUARDED_BY(mu_);  // ids of lost workers (late results)
  std::map<v1::Role, int> next_worker_index_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> told_shutdown_
      ABSL_GUARDED_BY(mu_);                             // workers that pulled after Close
  std::set<std::string> polling_ ABSL_GUARDED_BY(mu_);  // workers with a Pull waiting
  FaultPolicy fault_policy_ ABSL_GUARDED_BY(mu_);
  // Quarantined worker names and when each may register again.
  std::map<std::string, absl::Time> quarantined_ ABSL_GUARDED_BY(mu_);
  QueueMetrics* metrics_ = nullptr;  // set once before use (SetMetrics)
  // Waiting PullAsync calls, oldest first.
  struct Waiter {
    std::string worker_id;
    v1::Role role = v1::ROLE_UNSPECIFIED;
    absl::Time start;
    absl::Time deadline;
    PullDone done;
  };
  std::list<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  // The same waiters by deadline, so that one whose time is up is found without a scan.
  std::multimap<absl::Time, std::list<Waiter>::iterator> by_deadline_
      ABSL_GUARDED_BY(mu_);
  bool poked_ ABSL_GUARDED_BY(mu_) = false;  // see PokeLocked: every waiter is looked at
  bool earlier_deadline_ ABSL_GUARDED_BY(mu_) = false;  // a waiter is due before the rest
  // When ExpireLocked last looked at every worker and item (it does at most every 100 ms:
  // with thousands of workers a look per call would cost more than the calls).
  absl::Time last_expiry_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;   // the destructor runs
  std::thread dispatcher_ ABSL_GUARDED_BY(mu_);  // started by the first waiting PullAsync
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_WORK_QUEUE_H_
