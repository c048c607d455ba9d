#ifndef DUET_COORDINATOR_WORK_QUEUE_H_
#define DUET_COORDINATOR_WORK_QUEUE_H_

// The learner's dispatch state: registered workers, work items waiting for a worker of
// their role (or for one worker in particular), items in flight, and results. Workers
// pull; the training thread submits items and awaits their results.
//
// Completing an item twice counts once: the first result is kept, later ones are
// refused. (Leases and re-dispatch after a worker dies build on this.)
//
// Thread-safety: thread-safe. Every method may be called from any thread; Pull and
// Await block without holding the mutex.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "duet/v1/coordinator.pb.h"

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
};

class WorkQueue {
 public:
  // `max_ranked_workers` workers (in registration order) get c10d ranks 1..N; at most
  // `max_workers` may register. Timeouts are measured on `clock` (not owned; outlives the
  // queue).
  WorkQueue(std::string run_id, int32_t max_ranked_workers, Clock* clock = RealClock(),
            int32_t max_workers = kDefaultMaxWorkers);

  static constexpr int32_t kDefaultMaxWorkers = 1024;

  // Adds a worker. Its id is `name` when that is 1..64 characters of [A-Za-z0-9._:-] (with
  // "-2", "-3", ... when taken), else "rollout-N" / "scorer-N". ResourceExhausted when
  // `max_workers` are registered already.
  absl::StatusOr<WorkerRecord> Register(v1::Role role, const std::string& name, int32_t capacity);
  std::vector<WorkerRecord> Workers() const;
  int CountWorkers(v1::Role role) const;
  // Blocks until at least `count` workers of `role` registered (DeadlineExceeded after
  // `timeout`, Cancelled after Close()).
  absl::Status AwaitWorkers(v1::Role role, int count, absl::Duration timeout);

  // Queues `item` (its item_id is assigned and returned) for any worker of `role`, or
  // only for `worker_id` when it is not empty.
  std::string Submit(v1::Role role, v1::WorkItem item, const std::string& worker_id = "");

  // The next item for `worker_id`, waiting up to `timeout`; nullopt when none arrived.
  // NotFound for an unknown worker; Cancelled after Close(). Backpressure, so that one
  // client cannot make the learner hold more than its share: ResourceExhausted (and
  // nothing changes) while the worker already has a Pull waiting, or already holds an
  // item (a worker works on one item at a time and completes it before pulling again).
  absl::StatusOr<std::optional<v1::WorkItem>> Pull(const std::string& worker_id,
                                                   absl::Duration timeout);

  // Checks a result against the item that was handed out (the coordinator's validation).
  using ResultCheck =
      std::function<absl::Status(const v1::WorkItem& item, const v1::CompleteWorkRequest& result)>;

  // Records the result of an item in flight. Nothing changes unless it returns OK:
  //   NotFound: the item is unknown, or was completed already (a duplicate);
  //   PermissionDenied: another worker than result.worker_id() holds the item;
  //   what `check` (when set) returns: the item stays in flight for a correct result.
  absl::Status Complete(const v1::CompleteWorkRequest& result, const ResultCheck& check = nullptr);

  // The results of `item_ids`, in order, once all are in. DeadlineExceeded after
  // `timeout`, and then the items are dropped (queued, in flight or done): a late result
  // is NotFound. Cancelled after Close().
  absl::StatusOr<std::vector<v1::CompleteWorkRequest>> Await(const std::vector<std::string>& item_ids,
                                                             absl::Duration timeout);

  // Items queued, in flight and done-but-not-awaited (what the queue holds).
  int64_t items_held() const;

  // Wakes every waiter; Pull and Await return Cancelled from now on.
  void Close();
  // After Close(): waits until every registered worker has pulled and so been told that
  // the run ended, or `timeout` passed. True when all were told.
  bool AwaitShutdownNoticed(absl::Duration timeout);
  bool closed() const;

 private:
  struct Pending {
    v1::Role role;
    std::string worker_id;  // empty: any worker of the role
    v1::WorkItem item;
  };

  const std::string run_id_;
  Clock* const clock_;
  const int32_t max_ranked_workers_;
  const int32_t max_workers_;
  mutable absl::Mutex mu_;  // guards everything below; waiters use mu_'s conditions
  std::map<std::string, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  struct InFlight {
    std::string worker_id;
    v1::WorkItem item;
  };
  std::map<std::string, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);  // by item id
  std::map<std::string, v1::CompleteWorkRequest> results_ ABSL_GUARDED_BY(mu_);
  int64_t next_item_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t next_rank_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<v1::Role, int> next_worker_index_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> told_shutdown_ ABSL_GUARDED_BY(mu_);  // workers that pulled after Close
  std::set<std::string> polling_ ABSL_GUARDED_BY(mu_);        // workers with a Pull waiting
};

}  // namespace duet

#endif  // DUET_COORDINATOR_WORK_QUEUE_H_
