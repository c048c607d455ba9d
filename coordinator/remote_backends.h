#ifndef DUET_COORDINATOR_REMOTE_BACKENDS_H_
#define DUET_COORDINATOR_REMOTE_BACKENDS_H_

// Rollout and score backends whose work is done by the worker pools: a request is split
// into one work item per registered worker of the role (at least `min_rows_per_item`
// rows each), queued on the WorkQueue for workers to pull, and the results are gathered
// in order. Splitting does not change results: samples are seeded by their index in the
// whole request.
//
// Each item carries the policy version of the weights the workers were last sent (the
// weight snapshot's: `served_version`); a worker that holds another version refuses it.
//
// Thread-safety: thread-compatible (the training thread calls them).

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "model/task.h"
#include "coordinator/work_queue.h"

namespace duet {

struct DispatchOptions {
  absl::Duration item_timeout = absl::Minutes(10);
  absl::Duration worker_wait = absl::Minutes(2);  // for the first worker of a role
  int64_t min_rows_per_item = 8;
};

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
