#ifndef DUET_LEARNER_SERVICE_LEARNER_TELEMETRY_H_
#define DUET_LEARNER_SERVICE_LEARNER_TELEMETRY_H_

// The learner process's metrics (docs/metrics.md): the algorithm's (duet_learner_*), the
// work queue's and the pools' (QueueMetrics), the weights it publishes (duet_weights_*)
// and the RPCs it serves (duet_rpc_server_*), all in one registry that LearnerServer
// owns through this object. Recording never touches training state: it reads the step's
// report, the clock, and sizes.
//
// Thread-safety: the Record* methods are called from the training thread; queue(),
// rpc() and Refresh() from any thread.

#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/metrics/catalogue.h"
#include "learner/rl_loop.h"
#include "learner/service/queue_metrics.h"
#include "learner/service/work_queue.h"

namespace duet {

class LearnerTelemetry {
 public:
  // `registry` null: a private registry (metrics recorded, never served).
  // Live workers are the work queue's lease registry (WorkQueue).
  LearnerTelemetry(std::shared_ptr<prometheus::Registry> registry, Clock* clock);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  QueueMetrics* queue() { return &queue_; }
  metrics::RpcMetrics* rpc() { return &rpc_; }

  // At start: the run's targets and bounds.
  void RecordStart(int64_t target_steps, int64_t start_step, int64_t start_version,
                   int64_t lag_bound);
  // After step `report.step` (0-based): everything of the step; `sync_seconds` 0 when the
  // step did not sync; `step_seconds` the whole step.
  void RecordStep(const StepReport& report, double lr, double sync_seconds,
                  double step_seconds);
  // A checkpoint of `step` that took `seconds`.
  void RecordCheckpoint(int64_t step, double seconds, const absl::Status& status);
  // A weight sync of `version` (`bytes` of flattened parameters) that took `seconds`.
  void RecordSync(int64_t version, int64_t bytes, double seconds,
                  const absl::Status& status);
  // The collective formed with `members` ranks (the learner included).
  void RecordCollective(int members);
  // Per role: published version - the oldest version a worker of the role confirmed.
  void RecordWorkerVersions(int64_t published, const std::vector<WorkerRecord>& workers);
  // A FetchWeights stream served (`bytes` sent when OK).
  void RecordBootstrap(int code, int64_t bytes);
  // After every step and at start: the duet_pool_* recommendation.
  void UpdatePools(int recipe_rollout, int recipe_scorer) {
    queue_.UpdatePools(recipe_rollout, recipe_scorer);
  }
  // At each scrape.
  void Refresh() { queue_.Refresh(); }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  metrics::LearnerMetrics learner_;
  metrics::CoordinatorMetrics coordinator_;
  metrics::WeightsMetrics weights_;
  metrics::RpcMetrics rpc_;
  QueueMetrics queue_;
  int epoch_ = 0;  // the training thread's
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_LEARNER_TELEMETRY_H_
