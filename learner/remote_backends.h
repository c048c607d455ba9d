#ifndef DUET_LEARNER_REMOTE_BACKENDS_H_
#define DUET_LEARNER_REMOTE_BACKENDS_H_

// Rollout and score backends whose work is done by the worker pools: a request is split
// into one work item per registered worker of the role (at least `min_rows_per_item`
// rows each), queued on the WorkQueue for workers to pull, and the results are gathered
// in order. Splitting does not change results: samples are seeded by their index in the
// whole request.
//
// Thread-safety: thread-compatible (the training thread calls them).

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "common/task.h"
#include "learner/work_queue.h"

namespace duet {

struct DispatchOptions {
  absl::Duration item_timeout = absl::Minutes(10);
  absl::Duration worker_wait = absl::Minutes(2);  // for the first worker of a role
  int64_t min_rows_per_item = 8;
};

class RemoteRollout : public RolloutBackend {
 public:
  RemoteRollout(WorkQueue* queue, const int64_t* version, DispatchOptions options)
      : queue_(queue), version_(version), options_(options) {}
  absl::StatusOr<std::vector<Group>> Sample(const RolloutRequest& request) override;

 private:
  WorkQueue* queue_;
  const int64_t* version_;
  DispatchOptions options_;
};

class RemoteScorer : public ScoreBackend {
 public:
  RemoteScorer(WorkQueue* queue, const int64_t* version, DispatchOptions options)
      : queue_(queue), version_(version), options_(options) {}
  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries) override;

 private:
  WorkQueue* queue_;
  const int64_t* version_;
  DispatchOptions options_;
};

}  // namespace duet

#endif  // DUET_LEARNER_REMOTE_BACKENDS_H_
