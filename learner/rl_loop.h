#ifndef DUET_LEARNER_RL_LOOP_H_
#define DUET_LEARNER_RL_LOOP_H_

// One RL step of dual self-reward training, independent of transport:
//   1. pick this step's generation prompts and understanding images (a pure function of
//      the step, so a resumed run sees the same data);
//   2. rollout: K samples per input through the RolloutBackend;
//   3. scoring: reverse every (input, sample) pair through the ScoreBackend;
//   4. learner: advantages / preference pairs and one optimizer step.
// The same loop drives the in-process trainer and the distributed learner, whose
// backends are gRPC worker pools.
//
// Thread-safety: not thread-safe; one training thread.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "learner/policy_update.h"
#include "model/generation.h"
#include "model/task.h"

namespace duet {

struct RlRecipe {
  int64_t generation_inputs = 16;    // prompts per step (0 = understanding only)
  int64_t understanding_inputs = 8;  // images per step (0 = generation only)
  int64_t k = 8;                     // samples per input
  SamplingParams image_sampling;
  std::optional<double> cfg_scale = 1.5;
  SamplingParams caption_sampling;
  int64_t consistency_samples = 4;  // samples re-scored each step for the log-prob check
  uint64_t seed = 1;
  // How many versions a sample may lag the policy: 0 when the rollout workers get new
  // weights after every update (or share them), sync_every - 1 otherwise.
  int64_t max_lag = 0;
};

// Per direction, what a step trained on and how its rewards were spread (metrics only).
struct DirectionStats {
  int64_t samples = 0;
  int64_t groups = 0;
  int64_t tokens = 0;                     // output tokens of the samples
  double reward_std = 0;                  // over all samples
  double reward_group_std = 0;            // mean over groups of the within-group std
  double zero_variance_groups_ratio = 0;  // groups whose K rewards are all equal
  double advantage_std = 0;               // of the GRPO group-relative advantages
};
// The stats of the groups of `task` (rewards set). Pure: no RNG, no model.
DirectionStats ComputeDirectionStats(const std::vector<Group>& groups, Task task);

struct StepReport {
  int64_t step = 0;
  int64_t policy_version = 0;  // after the update
  double generation_reward = 0;     // mean self-reward of generated images
  double understanding_reward = 0;  // mean self-reward of sampled captions
  UpdateStats update;
  double logprob_max_diff = 0;  // behaviour vs recomputed at the same version
  double rollout_seconds = 0;
  double score_seconds = 0;
  double update_seconds = 0;
  int64_t samples = 0;
  DirectionStats generation_stats;
  DirectionStats understanding_stats;
  int64_t max_sample_lag = 0;  // largest (version - sample's version) among the samples
};

class RlLoop {
 public:
  // Borrowed pointers must outlive the loop. The loop owns the policy version: it starts
  // at `start_version` (0, or a checkpoint's) and counts the updates applied.
  RlLoop(PolicyUpdater* updater, RolloutBackend* rollout, ScoreBackend* scorer,
         std::vector<std::vector<int64_t>> prompts, std::vector<std::vector<int64_t>> images,
         RlRecipe recipe, int64_t start_version = 0);

  // Runs step `step` (0-based): rollouts and scores requested at version(), one update.
  // The report's policy_version is the new version (version() + 1 on success). Samples
  // older than version() - recipe.max_lag, or newer than version(), fail the step with
  // FailedPrecondition and change nothing.
  absl::StatusOr<StepReport> RunStep(int64_t step);

  // The policy version: the number of updates applied since the base model.
  int64_t version() const { return version_; }

 private:
  std::vector<std::vector<int64_t>> Pick(const std::vector<std::vector<int64_t>>& pool, int64_t n,
                                         int64_t step, uint64_t salt) const;

  PolicyUpdater* updater_;
  RolloutBackend* rollout_;
  ScoreBackend* scorer_;
  std::vector<std::vector<int64_t>> prompts_;
  std::vector<std::vector<int64_t>> images_;
  RlRecipe recipe_;
  int64_t version_;
};

}  // namespace duet

#endif  // DUET_LEARNER_RL_LOOP_H_
