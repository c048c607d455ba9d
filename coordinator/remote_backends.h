#ifndef DUET_COORDINATOR_REMOTE_BACKENDS_H_
#define DUET_COORDINATOR_REMOTE_BACKENDS_H_

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
#include "coordinator/work_queue.h"
#include "model/task.h"

namespace duet {

struct DispatchOptions {
  absl::Duration item_timeout = absl::Minutes(10);
  absl::Duration worker_wait = absl::Minutes(2);  // for the first worker of a role
  int64_t min_rows_per_item = 8;
  // How often one item is re-issued after a transient worker error.
  int max_retries = 3;
};

// True for the worker error codes that re-issue an item: UNAVAILABLE,
// DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED (a worker going away, slow or out of memory).
// Every other code fails the step with the worker's message.
bool IsTransientWorkerError(absl::StatusCode code);

// Queues `items` for workers of `role` and returns their results in order. An item whose
// worker reports a transient error is queued again, up to options.max_retries times; a
// permanent error, or a transient one past the retries, fails with the worker's code and
// message. DeadlineExceeded when results do not come within options.item_timeout.
absl::StatusOr<std::vector<v1::CompleteWorkRequest>> DispatchItems(WorkQueue* queue, v1::Role role,
                                                                   std::vector<v1::WorkItem> items,
                                                                   const DispatchOptions& options);

class RemoteRollout : public RolloutBackend {
 public:
  // `queue` must outlive this; `served_version` returns the version of the weights the
  // workers hold (the published snapshot's).
  RemoteRollout(WorkQueue* queue, std::function<int64_t()> served_version, DispatchOptions options)
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
  RemoteScorer(WorkQueue* queue, std::function<int64_t()> served_version, DispatchOptions options)
      : queue_(queue), served_version_(std::move(served_version)), options_(options) {}
  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries,
                                            int64_t policy_version) override;

 private:
  WorkQueue* queue_;
  std::function<int64_t()> served_version_;
  DispatchOptions options_;
};

}  // namespace duet

#endif  // DUET_COORDINATOR_REMOTE_BACKENDS_H_
