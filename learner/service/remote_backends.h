#ifndef DUET_LEARNER_SERVICE_REMOTE_BACKENDS_H_
#define DUET_LEARNER_SERVICE_REMOTE_BACKENDS_H_

// Rollout and score backends whose work is done by the worker pools: a request is split
// into one work item per registered worker of the role (at least `min_rows_per_item`
// rows each), queued on the WorkQueue for workers to pull, and the results are gathered
// in order. Splitting does not change results: samples are seeded by their index in the
// whole request.
//
// Each item carries the policy version the workers are expected to hold at least: the
// request's (the learner's version when the RlLoop asked) or, when older, the version of
// the weights the workers were last sent (the weight snapshot's: `served_version`, behind
// the learner's with sync_every > 1). A worker that holds an older version refuses the
// item; one that holds a newer one (asynchronous mode: a sync reached it while the item
// waited) computes with what it holds, and its result says which version that was.
//
// Thread-safety: thread-safe: Sample and Score may run on several threads at once (the
// RlLoop's collections in asynchronous mode); the WorkQueue is thread-safe and nothing
// else here changes after construction.

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "common/work/task.h"
#include "learner/service/work_queue.h"

namespace duet {

struct DispatchOptions {
  absl::Duration item_timeout = absl::Minutes(10);
  absl::Duration worker_wait = absl::Minutes(2);  // for the first worker of a role
  int64_t min_rows_per_item = 8;
  // Tries of one item, in all, before it fails the step when every worker of the role
  // has failed it (a pool of one keeps today's bound: the first try and 3 re-issues).
  int max_retries = 3;
  // An item that failed on this many distinct workers is poisoned: it fails the step.
  int poison_workers = 3;
  // Each rollout or score item is taken back from its worker (and re-issued to another)
  // this long after it was pulled: base + per_row * its rows (inputs * k, or queries).
  // Zero base and per-row: no deadline.
  absl::Duration item_deadline_base = absl::Seconds(60);
  absl::Duration item_deadline_per_row = absl::Seconds(1);
  // An item that every registered worker of its role has failed waits this long for
  // another worker to register before it is re-issued (a broken or hostile worker that
  // registered before the healthy ones is then not the whole pool that the rule above
  // judges). Zero: re-issued at once. The learner uses the recipe's item deadline.
  absl::Duration pool_wait = absl::Seconds(60);
};

// The deadline of an item of `rows` rows under `options` (zero: none).
absl::Duration ItemDeadline(const DispatchOptions& options, int64_t rows);

// True for the worker error codes that are a worker's passing trouble: UNAVAILABLE,
// DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED (a worker going away, slow or out of memory).
// The dispatch treats every code alike (below); this names them in logs.
bool IsTransientWorkerError(absl::StatusCode code);

// Queues `items` for workers of `role` and returns their results in order. An error
// result (any code, or a missed item deadline) is charged to the worker that made it
// (WorkQueue quarantines a worker whose errors repeat) and its item is queued again for
// another worker of the role (one that failed it gets it only when no other is
// registered). The step fails, naming the item and each worker's error, only when the
// item is poisoned: it failed on options.poison_workers distinct workers, or it failed
// more than options.max_retries times and every registered worker of the role has failed
// it, each re-issue after a wait of options.pool_wait for another worker. So one broken
// or hostile worker cannot end a run that has a healthy one, nor one whose healthy
// workers are still starting. DeadlineExceeded when results do not come within
// options.item_timeout.
absl::StatusOr<std::vector<v1::CompleteWorkRequest>> DispatchItems(
    WorkQueue* queue, v1::Role role, std::vector<v1::WorkItem> items,
    const DispatchOptions& options);

class RemoteRollout : public RolloutBackend {
 public:
  // `queue` must outlive this; `served_version` returns the version of the weights the
  // workers hold (the published snapshot's).
  RemoteRollout(WorkQueue* queue, std::function<int64_t()> served_version,
                DispatchOptions options)
      : queue_(queue), served_version_(std::move(served_version)), options_(options) {}
  absl::StatusOr<std::vector<Group>> Sample(const RolloutRequest& request) override;

 private:
  WorkQueue* queue_;
  std::function<int64_t()> served_version_;
  DispatchOptions options_;
};

class RemoteScorer : public ScoreBackend {
 public:
  // `queue` must outlive this; `served_version` returns the version of the weights the
  // workers hold (the published snapshot's).
  RemoteScorer(WorkQueue* queue, std::function<int64_t()> served_version,
               DispatchOptions options)
      : queue_(queue), served_version_(std::move(served_version)), options_(options) {}
  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries,
                                            int64_t policy_version) override;

 private:
  WorkQueue* queue_;
  std::function<int64_t()> served_version_;
  DispatchOptions options_;
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_REMOTE_BACKENDS_H_
