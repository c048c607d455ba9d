#include "learner/service/learner_telemetry.h"

#include <algorithm>
#include <limits>

#include "common/metrics/metrics_server.h"

namespace duet {
namespace {

std::shared_ptr<prometheus::Registry> OrNew(std::shared_ptr<prometheus::Registry> r) {
  return r ? r : std::make_shared<prometheus::Registry>();
}

}  // namespace

LearnerTelemetry::LearnerTelemetry(std::shared_ptr<prometheus::Registry> registry,
                                   Clock* clock)
    : registry_(OrNew(std::move(registry))),
      learner_(*registry_),
      coordinator_(*registry_),
      weights_(*registry_),
      rpc_(*registry_, metrics::RpcMetrics::Side::kServer,
           {"Register", "PullWork", "CompleteWork", "FetchWeights", "GetRunStatus"}),
      queue_(&coordinator_, clock) {}

void LearnerTelemetry::RecordStart(int64_t target_steps, int64_t start_step,
                                   int64_t start_version, int64_t lag_bound) {
  learner_.target_steps->Set(static_cast<double>(target_steps));
  learner_.step->Set(static_cast<double>(start_step));
  learner_.policy_version->Set(static_cast<double>(start_version));
  learner_.sample_lag_bound->Set(static_cast<double>(lag_bound));
  learner_.checkpoint_step->Set(static_cast<double>(start_step));
  weights_.version->Set(static_cast<double>(start_version));
}

void LearnerTelemetry::RecordStep(const StepReport& r, double lr, double sync_seconds,
                                  double step_seconds) {
  learner_.step->Set(static_cast<double>(r.step + 1));
  learner_.last_step_timestamp->SetToCurrentTime();
  learner_.step_seconds->Observe(step_seconds);
  learner_.phase_rollout->Observe(r.rollout_seconds);
  learner_.phase_scoring->Observe(r.score_seconds);
  learner_.phase_update->Observe(r.update_seconds);
  if (sync_seconds > 0) learner_.phase_sync->Observe(sync_seconds);
  for (bool gen : {true, false}) {
    const DirectionStats& d = gen ? r.generation_stats : r.understanding_stats;
    learner_.samples.Get(gen).Increment(static_cast<double>(d.samples));
    learner_.tokens.Get(gen).Increment(static_cast<double>(d.tokens));
    learner_.groups.Get(gen).Increment(static_cast<double>(d.groups));
    learner_.stale_samples_dropped.Get(gen).Increment(
        static_cast<double>(d.samples_dropped_stale));
    learner_.reward_mean.Get(gen).Set(gen ? r.generation_reward : r.understanding_reward);
    learner_.reward_std.Get(gen).Set(d.reward_std);
    learner_.reward_group_std.Get(gen).Set(d.reward_group_std);
    learner_.zero_variance_groups_ratio.Get(gen).Set(d.zero_variance_groups_ratio);
    learner_.advantage_std.Get(gen).Set(d.advantage_std);
  }
  learner_.loss->Set(r.update.loss.loss);
  learner_.kl->Set(r.update.loss.kl);
  learner_.grad_norm->Set(r.update.grad_norm);
  learner_.learning_rate->Set(lr);
  learner_.dlogp->Set(r.logprob_max_diff);
  learner_.policy_version->Set(static_cast<double>(r.policy_version));
  learner_.sample_lag_max->Set(static_cast<double>(r.max_sample_lag));
}

void LearnerTelemetry::RecordCheckpoint(int64_t step, double seconds,
                                        const absl::Status& status) {
  learner_.phase_checkpoint->Observe(seconds);
  if (!status.ok()) {
    learner_.checkpoint_failures->Increment();
    return;
  }
  learner_.checkpoint_timestamp->SetToCurrentTime();
  learner_.checkpoint_step->Set(static_cast<double>(step));
}

void LearnerTelemetry::RecordSync(int64_t version, int64_t bytes, double seconds,
                                  const absl::Status& status) {
  weights_.broadcasts->Increment();
  if (!status.ok()) {
    weights_.BroadcastFailures(static_cast<int>(status.code())).Increment();
    return;
  }
  weights_.version->Set(static_cast<double>(version));
  weights_.broadcast_seconds->Observe(seconds);
  weights_.broadcast_size_bytes->Observe(static_cast<double>(bytes));
}

void LearnerTelemetry::RecordCollective(int members) {
  weights_.epoch->Set(++epoch_);
  weights_.members->Set(members);
}

void LearnerTelemetry::RecordWorkerVersions(int64_t published,
                                            const std::vector<WorkerRecord>& workers) {
  for (bool rollout : {true, false}) {
    int64_t oldest = std::numeric_limits<int64_t>::max();
    for (const WorkerRecord& w : workers) {
      if ((w.role == v1::ROLE_ROLLOUT) == rollout)
        oldest = std::min(oldest, w.confirmed_version);
    }
    coordinator_.worker_version_lag_max.Get(rollout).Set(
        oldest == std::numeric_limits<int64_t>::max()
            ? 0.0
            : static_cast<double>(std::max<int64_t>(0, published - oldest)));
  }
}

void LearnerTelemetry::RecordBootstrap(int code, int64_t bytes) {
  weights_.BootstrapFetches(code).Increment();
  if (code == 0) weights_.bootstrap_bytes->Increment(static_cast<double>(bytes));
}

}  // namespace duet
