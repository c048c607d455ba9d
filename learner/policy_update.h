#ifndef DUET_LEARNER_POLICY_UPDATE_H_
#define DUET_LEARNER_POLICY_UPDATE_H_

// One optimizer step of the policy from scored groups: GRPO (group-relative advantages,
// PPO-clipped token surrogate, k3 KL to a frozen reference) or SimPO (best/worst pair of
// each group, reference-free, length-normalised). Gradients are accumulated over
// micro-batches so the result equals one step on the whole batch.
//
// Thread-safety: not thread-safe; owned by the learner's training thread, which also
// serializes it with anything that reads the policy.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/token_layout.h"
#include "common/model/transformer.h"
#include "common/work/task.h"
#include "learner/adamw.h"
#include "learner/rl_objective.h"

namespace duet {

enum class RlAlgorithm { kGrpo, kSimpo };

struct RlOptimizerOptions {
  RlAlgorithm algorithm = RlAlgorithm::kGrpo;
  GrpoOptions grpo;
  SimpoOptions simpo;
  double lr = 2e-4;
  double weight_decay = 0.0;
  double grad_clip = 1.0;
  int64_t micro_batch = 64;  // rows per forward/backward
};

struct UpdateStats {
  LossStats loss;
  double grad_norm = 0;
  int64_t samples = 0;
  int64_t pairs = 0;  // SimPO
};

// The training row of a sample: the forward-direction sequence and the [begin, end)
// range of its output tokens.
struct TrainingRow {
  std::vector<int64_t> tokens;
  int64_t target_begin = 0;
  int64_t target_end = 0;
};
TrainingRow MakeTrainingRow(const TokenLayout& layout, Task task,
                            const std::vector<int64_t>& input,
                            const std::vector<int64_t>& output);

// OK when `input` and `output` can be trained on: every id in the vocabulary and the
// training row within `max_tokens` (the model's context). InvalidArgument otherwise; such
// a row would make LibTorch throw an index error.
absl::Status CheckTrainableRow(const TokenLayout& layout, int64_t max_tokens, Task task,
                               const std::vector<int64_t>& input,
                               const std::vector<int64_t>& output);

// Log-probs of the target tokens of `rows` under `model`: [N, L-1] (entry j-1 is the
// log-prob of token j) plus a 0/1 mask [N, L-1] of target positions. Records autograd
// when enabled.
std::pair<torch::Tensor, torch::Tensor> TargetLogprobs(
    const Transformer& model, const std::vector<TrainingRow>& rows, int64_t pad);

class PolicyUpdater {
 public:
  // `reference` may be null when the KL coefficient is 0 or the algorithm is SimPO.
  PolicyUpdater(Transformer* policy, const Transformer* reference, TokenLayout layout,
                RlOptimizerOptions options);

  // One optimizer step from `groups` (rewards set). InvalidArgument when a group is
  // malformed (output/logprob lengths disagree).
  //
  // `policy_version` is the version of the weights being updated; every sample must come
  // from a version in [policy_version - max_lag, policy_version], else FailedPrecondition
  // (a stale or future sample) and nothing changes.
  absl::StatusOr<UpdateStats> Update(const std::vector<Group>& groups,
                                     int64_t policy_version, int64_t max_lag = 0);

  // Recomputes the behaviour log-probs of up to `max_samples` samples with the current
  // weights and returns the largest absolute difference from what the sampler reported.
  // At the same policy version it should be at float noise.
  absl::StatusOr<double> MaxLogprobDifference(const std::vector<Group>& groups,
                                              int64_t max_samples) const;

  AdamW& optimizer() { return optimizer_; }
  const RlOptimizerOptions& options() const { return options_; }

 private:
  absl::StatusOr<UpdateStats> UpdateGrpo(const std::vector<Group>& groups);
  absl::StatusOr<UpdateStats> UpdateSimpo(const std::vector<Group>& groups);

  Transformer* policy_;
  const Transformer* reference_;
  TokenLayout layout_;
  RlOptimizerOptions options_;
  AdamW optimizer_;
};

}  // namespace duet

#endif  // DUET_LEARNER_POLICY_UPDATE_H_
