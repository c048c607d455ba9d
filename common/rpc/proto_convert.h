#ifndef DUET_COMMON_RPC_PROTO_CONVERT_H_
#define DUET_COMMON_RPC_PROTO_CONVERT_H_

// Conversions between duet.v1 messages and the native work types, with validation: a
// message from the wire is checked (token ids in the vocabulary, lengths, K, finite
// sampling parameters) and rejected with InvalidArgument naming the field.

#include <vector>

#include "absl/status/statusor.h"
#include "common/model/token_layout.h"
#include "common/work/reward_kind.h"
#include "common/work/task.h"
#include "duet/v1/coordinator.pb.h"

namespace duet {

v1::TaskKind ToProto(Task task);
absl::StatusOr<Task> FromProto(v1::TaskKind kind);

void ToProto(const RolloutRequest& req, v1::RolloutWork* out);
absl::StatusOr<RolloutRequest> FromProto(const v1::RolloutWork& work,
                                         const TokenLayout& layout);

void ToProto(const std::vector<Group>& groups, v1::RolloutResult* out);
// `inputs`/`task` come from the request that produced the result (the result carries
// only outputs); InvalidArgument when counts disagree.
absl::StatusOr<std::vector<Group>> FromProto(const v1::RolloutResult& result,
                                             const RolloutRequest& request,
                                             int64_t policy_version);

void ToProto(const std::vector<RewardQuery>& queries, v1::ScoreWork* out);
absl::StatusOr<std::vector<RewardQuery>> FromProto(const v1::ScoreWork& work,
                                                   const TokenLayout& layout);

// A run's reward settings (the recipe's self_reward and reward keys), as the learner
// sends them to its scorers at registration.
struct RunRewards {
  SelfRewardKinds kinds = kDefaultSelfRewardKinds;
  RewardMix mix;
};
void ToProto(const RunRewards& rewards, v1::RewardConfig* out);
// InvalidArgument naming the field: an unknown kind, or a mix ValidateRewardMix refuses
// (an empty message too: a learner that sends none cannot be followed).
absl::StatusOr<RunRewards> FromProto(const v1::RewardConfig& config);

}  // namespace duet

#endif  // DUET_COMMON_RPC_PROTO_CONVERT_H_
