#ifndef DUET_SCORER_SELF_REWARD_H_
#define DUET_SCORER_SELF_REWARD_H_

// The scorer worker's core: dual self-rewards from reversed pairs, one batched
// teacher-forced pass.
//
//   generated image y for prompt P:  r = mean log p(P <eos> | <bos> <describe> <boi> y
//   <eoi>) sampled caption c for image I:   r = mean log p(I | <bos> <draw> c <boi>)
//
// That is RewardKind::kLikelihood; the other kinds (common/work/reward_kind.h) also score
// the span under the null input, in a second pass of its own, so the first pass (and with
// it every kLikelihood reward) is the same computation whatever the kinds:
//   generated image y:  <bos> <describe> <boi> <pad> x36 <eoi> P <eos>
//   sampled caption c:  <bos> <draw> <pad> x|c| <boi> I      (the CFG unconditional row)
// Within one group (one input, K outputs) the null pass of a generated image's query is
// the same for every sample, so for the image reward kPmi ranks a group exactly as
// kLikelihood does; for captions it differs by a term that depends on the caption's
// length.
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
#include "common/model/generation.h"
#include "common/work/reward_kind.h"
#include "common/work/task.h"

namespace duet {

// The reversed sequence of `q` and the span whose mean log-likelihood is the reward.
// InvalidArgument when the input or output is malformed for its direction.
absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>>
ReversedSequence(const TokenLayout& layout, const RewardQuery& q);

// The null-input sequence of `q` (see the file comment) and its scored span, which holds
// the same tokens as ReversedSequence's. InvalidArgument as ReversedSequence.
absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>> NullSequence(
    const TokenLayout& layout, const RewardQuery& q);

// The forward sequence of `q`, the output in the direction it was sampled, and the
// output's span: <bos> <draw> P <boi> y (the image codes), or
// <bos> <describe> <boi> I <eoi> c <eos> (the caption and its <eos>).
// InvalidArgument as ReversedSequence.
absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>>
ForwardSequence(const TokenLayout& layout, const RewardQuery& q);

// Which passes besides the reversed one a query needs.
struct ExtraPasses {
  bool null = false;
  bool forward = false;
  bool variants = false;  // the reversed pass of each of CaptionVariants(query)
};

// The extra passes `kind` needs.
inline ExtraPasses PassesFor(RewardKind kind) {
  return {NeedsNullPass(kind), NeedsForwardPass(kind), NeedsVariantPasses(kind)};
}

// `q` with its caption (the prompt of a generated image, or the sampled caption) replaced
// by each of its relation variants (world::RelationVariants), in that order; empty when
// the caption has none or is not a caption of the grammar. Reads the caption's words
// only.
std::vector<RewardQuery> CaptionVariants(const TokenLayout& layout, const RewardQuery& q);

// The per-token log-likelihoods of one query.
struct PairScores {
  std::vector<float> conditional;  // cond_t over the reversed span
  std::vector<float> null;         // null_t; empty when the null pass was not run
  std::vector<float> forward;      // fwd_u over the forward span; empty when not run
  // sum_t cond_t of each CaptionVariants(query), in order; empty when not run or none.
  std::vector<double> variant_sums;
};

// Scores every query's reversed span (in chunks of at most `max_batch` rows, one pass per
// chunk) and, where extra[i] asks, query i's null and forward spans and its caption
// variants' reversed spans, each kind of pass in chunks of its own (so the reversed
// pass's batches never depend on the extra passes). InvalidArgument naming the query when
// one is malformed, or when extra.size() differs from queries.size().
absl::StatusOr<std::vector<PairScores>> ScoreReversedPairs(
    const Transformer& model, const TokenLayout& layout,
    const std::vector<RewardQuery>& queries, int64_t max_batch,
    const std::vector<ExtraPasses>& extra);

// The reward of `kind` from one query's scores.
// REQUIRES: scores.conditional non-empty; scores.null of the same size when
// NeedsNullPass(kind); scores.forward filled when NeedsForwardPass(kind).
double CombineReward(RewardKind kind, const PairScores& scores);

// Rewards for `queries`, in order, in chunks of at most `max_batch` rows: each query's
// direction picks its kind from `kinds` (image for kGeneration, caption for
// kUnderstanding). With the default kinds this is exactly today's reward.
absl::StatusOr<std::vector<double>> ComputeSelfRewards(
    const Transformer& model, const TokenLayout& layout,
    const std::vector<RewardQuery>& queries, int64_t max_batch = 256,
    const SelfRewardKinds& kinds = SelfRewardKinds());

// The score backend of a single process.
class InProcessScorer : public ScoreBackend {
 public:
  InProcessScorer(const Transformer* model, TokenLayout layout,
                  SelfRewardKinds kinds = SelfRewardKinds())
      : model_(model), layout_(layout), kinds_(kinds) {}
  // Scores with `model` as it is now (the policy itself, or the frozen reference).
  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries,
                                            int64_t /*policy_version*/) override {
    return ComputeSelfRewards(*model_, layout_, queries, /*max_batch=*/256, kinds_);
  }

 private:
  const Transformer* model_;
  TokenLayout layout_;
  SelfRewardKinds kinds_;
};

}  // namespace duet

#endif  // DUET_SCORER_SELF_REWARD_H_
