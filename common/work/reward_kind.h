#ifndef DUET_COMMON_WORK_REWARD_KIND_H_
#define DUET_COMMON_WORK_REWARD_KIND_H_

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
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace duet {

enum class RewardKind {
  // mean_t cond_t: how likely the output makes the input, today's reward.
  kLikelihood,
  // mean_t (cond_t - null_t): pointwise mutual information per token; what the input
  // explains beyond what is likely anyway.
  kPmi,
  // The mean of the 4 lowest per-token PMIs (cond_t - null_t): how well the input
  // explains
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
  // kJoint plus the caption's relation contrast: log p(pair) - log sum over V of
  // p(pair'),
  // divided by |span|, where V is a position caption and its three relation variants (the
  // same two objects, each other relation: world::RelationVariants) and p(pair') the
  // reversed pass with the caption replaced (for a caption: the image given each variant;
  // for an image: each variant of the prompt given the image). It is the log posterior of
  // the caption's relation among the four, by the same model: what the likelihood
  // averages away (a relation moves two of 36 image codes) compared head on. 0 for every
  // other caption (single, counting, two_objects, mixed, or text outside the grammar), so
  // it is kJoint there. (Contrasting with "A and B" too was measured and is worse: the
  // drawing direction finds a diagonal pair likelier under a relation than under "and".)
  kContrast,
};

inline constexpr std::array<RewardKind, 5> kAllRewardKinds = {
    RewardKind::kLikelihood, RewardKind::kPmi, RewardKind::kPmiWorst, RewardKind::kJoint,
    RewardKind::kContrast};

// The tokens kPmiWorst averages over.
inline constexpr int kPmiWorstTokens = 4;

// "likelihood", "pmi", "pmi_worst", "joint", "contrast": the names recipes and flags use.
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
    case RewardKind::kContrast:
      return "contrast";
  }
  return "likelihood";
}

// InvalidArgument listing the known names.
inline absl::StatusOr<RewardKind> ParseRewardKind(std::string_view name) {
  for (RewardKind k : kAllRewardKinds) {
    if (RewardKindName(k) == name) return k;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown self-reward kind \"", std::string(name),
                   "\" (likelihood, pmi, pmi_worst, joint or contrast)"));
}

// Whether `kind` needs the null-input pass, and the forward pass.
inline bool NeedsNullPass(RewardKind kind) {
  return kind == RewardKind::kPmi || kind == RewardKind::kPmiWorst;
}
inline bool NeedsForwardPass(RewardKind kind) {
  return kind == RewardKind::kJoint || kind == RewardKind::kContrast;
}
// Whether `kind` needs the reversed pass of each relation variant of the caption.
inline bool NeedsVariantPasses(RewardKind kind) { return kind == RewardKind::kContrast; }

// The kind of each direction's self-reward: `image` scores a generated image (the prompt
// given the image), `caption` a sampled caption (the image given the caption).
struct SelfRewardKinds {
  RewardKind image = RewardKind::kLikelihood;
  RewardKind caption = RewardKind::kLikelihood;

  bool operator==(const SelfRewardKinds& o) const {
    return image == o.image && caption == o.caption;
  }
};

// The default recipe's kinds (learner/recipe.h), and duet-scorer's flag defaults, so that
// a scorer started by hand for a default recipe scores as `duet local`'s scorers do.
// The caption reward is contrast, the image reward the likelihood (measured:
// docs/results.md).
inline constexpr SelfRewardKinds kDefaultSelfRewardKinds{RewardKind::kLikelihood,
                                                         RewardKind::kContrast};

// Where a scorer's reward comes from (recipe key `reward`): a weighted sum of the
// self-reward (of the kinds above) and the score of an external reward service
// (proto/duet/v1/reward.proto) at `external_address`. The default is the self-reward
// alone, computed exactly as without this option. A term whose weight is 0 is not
// computed (an external weight of 0 never calls the service).
struct RewardMix {
  double self = 1.0;
  double external = 0.0;
  std::string external_address;  // HOST:PORT of the duet.v1.Reward service
  int64_t timeout_ms = 30000;    // deadline of each call to it
  std::string auth_token_file;   // the service's shared token; empty: none sent

  // The self-reward alone, weight 1: the default.
  bool IsSelfOnly() const { return self == 1.0 && external == 0.0; }
  bool operator==(const RewardMix& o) const {
    return self == o.self && external == o.external &&
           external_address == o.external_address && timeout_ms == o.timeout_ms &&
           auth_token_file == o.auth_token_file;
  }
};

// InvalidArgument naming the field ("self", "external", "external_address",
// "timeout_ms") when the weights are not finite, both are 0, an external weight has no
// address, or timeout_ms is outside [1, 600000].
inline absl::Status ValidateRewardMix(const RewardMix& m) {
  if (!std::isfinite(m.self) || !std::isfinite(m.external)) {
    return absl::InvalidArgumentError("self, external: weights must be finite");
  }
  if (m.self == 0.0 && m.external == 0.0)
    return absl::InvalidArgumentError("self, external: both weights are 0");
  if (m.external != 0.0 && m.external_address.empty()) {
    return absl::InvalidArgumentError(
        "external_address: required when the external weight is not 0");
  }
  if (m.timeout_ms < 1 || m.timeout_ms > 600000) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout_ms: must be in [1, 600000], got ", m.timeout_ms));
  }
  return absl::OkStatus();
}

}  // namespace duet

#endif  // DUET_COMMON_WORK_REWARD_KIND_H_
