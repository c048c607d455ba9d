#ifndef DUET_MODEL_REWARD_KIND_H_
#define DUET_MODEL_REWARD_KIND_H_

// Which reversed-pair self-reward a scorer computes, per direction. The scorer computes
// them (scorer/self_reward.h); the recipe names them (learner/recipe.h). Defined here,
// below both, so that the recipe can validate a name without linking the scorer.
//
// Every kind reads the per-token log-likelihoods of the reversed pair's scored span (the
// image's 36 codes given a caption, or a prompt and its <eos> given an image):
//   cond_t = log p(x_t | input, x_<t)       the reversed pair as it is
//   null_t = log p(x_t | null input, x_<t)  the input replaced by as many <pad>s (for a
//                                           caption: the unconditional branch that
//                                           classifier-free guidance uses)
//   fwd_u  = log p(y_u | input, y_<u)       the sampled output itself, in the direction
//                                           it was sampled (a caption given its image,
//                                           or an image given its prompt), at
//                                           temperature 1 without guidance
//
// Thread-safety: constants and pure functions.

#include <array>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace duet {

enum class RewardKind {
  // mean_t cond_t: how likely the output makes the input, today's reward.
  kLikelihood,
  // mean_t (cond_t - null_t): pointwise mutual information per token; what the input
  // explains beyond what is likely anyway.
  kPmi,
  // The mean of the 4 lowest per-token PMIs (cond_t - null_t): how well the input explains
  // the output's worst-explained part (4 codes = one cell of the 3x3 grid), so one wrong
  // object is not averaged away by the 32 codes the input explains.
  kPmiWorst,
  // (sum_t cond_t + sum_u fwd_u) / |span|: the log-likelihood of the pair in both
  // directions, scaled like kLikelihood (within a group |span| is the same for every
  // sample). The reversed pass says what the output explains; the forward pass is the
  // model's own belief in the output (so part of this reward is self-certainty: a caption
  // the describe direction finds unlikely, such as one outside the grammar it was taught,
  // scores low even when it is true of the image).
  kJoint,
};

inline constexpr std::array<RewardKind, 4> kAllRewardKinds = {RewardKind::kLikelihood, RewardKind::kPmi,
                                                              RewardKind::kPmiWorst, RewardKind::kJoint};

// The tokens kPmiWorst averages over.
inline constexpr int kPmiWorstTokens = 4;

// "likelihood", "pmi", "pmi_worst", "joint": the names recipes and flags use.
inline std::string_view RewardKindName(RewardKind kind) {
  switch (kind) {
    case RewardKind::kLikelihood:
      return "likelihood";
    case RewardKind::kPmi:
      return "pmi";
    case RewardKind::kPmiWorst:
      return "pmi_worst";
    case RewardKind::kJoint:
      return "joint";
  }
  return "likelihood";
}

// InvalidArgument listing the known names.
inline absl::StatusOr<RewardKind> ParseRewardKind(std::string_view name) {
  for (RewardKind k : kAllRewardKinds) {
    if (RewardKindName(k) == name) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown self-reward kind \"", std::string(name), "\" (likelihood, pmi, pmi_worst or joint)"));
}

// Whether `kind` needs the null-input pass, and the forward pass.
inline bool NeedsNullPass(RewardKind kind) { return kind == RewardKind::kPmi || kind == RewardKind::kPmiWorst; }
inline bool NeedsForwardPass(RewardKind kind) { return kind == RewardKind::kJoint; }

// The kind of each direction's self-reward: `image` scores a generated image (the prompt
// given the image), `caption` a sampled caption (the image given the caption).
struct SelfRewardKinds {
  RewardKind image = RewardKind::kLikelihood;
  RewardKind caption = RewardKind::kLikelihood;

  bool operator==(const SelfRewardKinds& o) const { return image == o.image && caption == o.caption; }
};

// The default recipe's kinds (learner/recipe.h), and duet-scorer's flag defaults, so that
// a scorer started by hand for a default recipe scores as `duet local`'s scorers do.
// The caption reward is joint (measured: docs/results.md); the image reward stays the
// likelihood, which keeps the default (generation-only) run's weights as they were.
inline constexpr SelfRewardKinds kDefaultSelfRewardKinds{RewardKind::kLikelihood, RewardKind::kJoint};

}  // namespace duet

#endif  // DUET_MODEL_REWARD_KIND_H_
