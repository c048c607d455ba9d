#ifndef DUET_SCORER_HANDLER_H_
#define DUET_SCORER_HANDLER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/token_layout.h"
#include "common/model/transformer.h"
#include "common/rpc/reward_service.h"
#include "common/work/reward_kind.h"
#include "common/work/task.h"
#include "duet/v1/coordinator.pb.h"

namespace duet {

// Where a scorer's rewards come from (the recipe's `reward` key,
// common/work/reward_kind.h): reward = self_weight * self-reward (of `kinds`) +
// external_weight * the external service's score. A term of weight 0 is not computed;
// with the defaults the reward is the self-reward itself, bit for bit.
struct ScorerRewards {
  SelfRewardKinds kinds = kDefaultSelfRewardKinds;
  double self_weight = 1.0;
  double external_weight = 0.0;
  // The external reward service. REQUIRED (non-null) when external_weight != 0; not
  // owned; must outlive the calls.
  const RewardClient* external = nullptr;
};

// A scorer's reward wiring for a run's reward settings (the recipe's self_reward and
// reward keys): the rewards to compute, and the client of the external reward service
// when its weight is not 0. The one place the wiring is written: duet-scorer builds it
// from what the learner sends at registration, `duet rl` from its recipe.
struct ScorerRewardSetup {
  ScorerRewards rewards;
  std::shared_ptr<RewardClient>
      client;  // rewards.external points to it; null: not called
};
// The service's token comes from `auth_token_file` (a file on this side, never the
// learner's token; empty: none sent); `tls_ca_file` (empty: plaintext) enables TLS to it.
// InvalidArgument for a mix ValidateRewardMix refuses; the token file's or the client's
// error otherwise.
absl::StatusOr<ScorerRewardSetup> MakeScorerRewards(const SelfRewardKinds& kinds,
                                                    const RewardMix& mix,
                                                    const std::string& auth_token_file,
                                                    const std::string& tls_ca_file);

// The rewards of `queries`, in order. Any failure of the external service fails the
// whole batch with its error (UNAVAILABLE naming the address when it cannot be reached):
// a reward is never made up. FailedPrecondition when external_weight != 0 and no client
// is given.
absl::StatusOr<std::vector<double>> ComputeScorerRewards(
    const Transformer& model, const TokenLayout& layout,
    const std::vector<RewardQuery>& queries, int64_t max_batch,
    const ScorerRewards& rewards);

// The scorer worker's WorkHandler: validates item.score() (InvalidArgument naming the
// field), computes one reward per query (ComputeScorerRewards), fills result->score().
absl::Status HandleScoreItem(const Transformer& model, const TokenLayout& layout,
                             int64_t max_batch, const v1::WorkItem& item,
                             v1::CompleteWorkRequest* result,
                             const ScorerRewards& rewards);

// The self-reward of `kinds` alone.
absl::Status HandleScoreItem(const Transformer& model, const TokenLayout& layout,
                             int64_t max_batch, const v1::WorkItem& item,
                             v1::CompleteWorkRequest* result,
                             const SelfRewardKinds& kinds = SelfRewardKinds());

}  // namespace duet

#endif  // DUET_SCORER_HANDLER_H_
