#ifndef DUET_SCORER_SELF_REWARD_H_
#define DUET_SCORER_SELF_REWARD_H_

// The scorer worker's core: dual self-rewards from reversed pairs, one batched
// teacher-forced pass.
//
//   generated image y for prompt P:  r = mean log p(P <eos> | <bos> <describe> <boi> y <eoi>)
//   sampled caption c for image I:   r = mean log p(I | <bos> <draw> c <boi>)
//
// The prompt's <eos> is scored with it: a caption that ought to stop there is part of
// what the image must explain (an image with an extra object makes "a red circle <eos>"
// less likely than one without).
//
// Thread-safety: free functions; read the model only.

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/generation.h"
#include "model/task.h"

namespace duet {

// The reversed sequence of `q` and the span whose mean log-likelihood is the reward.
// InvalidArgument when the input or output is malformed for its direction.
absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>> ReversedSequence(
    const TokenLayout& layout, const RewardQuery& q);

// Rewards for `queries`, in order, in chunks of at most `max_batch` rows.
absl::StatusOr<std::vector<double>> ComputeSelfRewards(const Transformer& model,
                                                       const TokenLayout& layout,
                                                       const std::vector<RewardQuery>& queries,
                                                       int64_t max_batch = 256);

// The score backend of a single process.
class InProcessScorer : public ScoreBackend {
 public:
  InProcessScorer(const Transformer* model, TokenLayout layout) : model_(model), layout_(layout) {}
  // Scores with `model` as it is now (the policy itself, or the frozen reference).
  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries,
                                            int64_t /*policy_version*/) override {
    return ComputeSelfRewards(*model_, layout_, queries);
  }

 private:
  const Transformer* model_;
  TokenLayout layout_;
};

}  // namespace duet

#endif  // DUET_SCORER_SELF_REWARD_H_
