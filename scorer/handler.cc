#include "scorer/handler.h"

#include "base/status_macros.h"
#include "rpc/proto_convert.h"
#include "scorer/self_reward.h"

namespace duet {

absl::Status HandleScoreItem(const Transformer& model, const TokenLayout& layout, int64_t max_batch,
                             const v1::WorkItem& item, v1::CompleteWorkRequest* result,
                             const SelfRewardKinds& kinds) {
  if (!item.has_score()) return absl::InvalidArgumentError("item: a scorer takes score items");
  DUET_ASSIGN_OR_RETURN(std::vector<RewardQuery> queries, FromProto(item.score(), layout));
  DUET_ASSIGN_OR_RETURN(std::vector<double> rewards, ComputeSelfRewards(model, layout, queries, max_batch, kinds));
  result->mutable_score()->mutable_rewards()->Assign(rewards.begin(), rewards.end());
  return absl::OkStatus();
}

}  // namespace duet
