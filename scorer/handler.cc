#include "scorer/handler.h"

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/rpc/proto_convert.h"
#include "common/rpc/rpc_util.h"
#include "scorer/self_reward.h"

namespace duet {

absl::StatusOr<ScorerRewardSetup> MakeScorerRewards(const SelfRewardKinds& kinds,
                                                    const RewardMix& mix,
                                                    const std::string& auth_token_file,
                                                    const std::string& tls_ca_file) {
  DUET_RETURN_IF_ERROR(ValidateRewardMix(mix));
  ScorerRewardSetup out;
  out.rewards.kinds = kinds;
  out.rewards.self_weight = mix.self;
  out.rewards.external_weight = mix.external;
  if (mix.external == 0.0) return out;
  RewardClient::Options o;
  o.address = mix.external_address;
  o.timeout = absl::Milliseconds(mix.timeout_ms);
  o.security.ca_file = tls_ca_file;
  if (!auth_token_file.empty()) {
    DUET_ASSIGN_OR_RETURN(o.auth_token,
                          ResolveAuthToken(/*token_flag=*/"", auth_token_file));
  }
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<RewardClient> client, RewardClient::Create(o));
  out.client = std::move(client);
  out.rewards.external = out.client.get();
  return out;
}

absl::StatusOr<std::vector<double>> ComputeScorerRewards(
    const Transformer& model, const TokenLayout& layout,
    const std::vector<RewardQuery>& queries, int64_t max_batch, const ScorerRewards& r) {
  if (r.external_weight == 0.0) {
    DUET_ASSIGN_OR_RETURN(std::vector<double> self,
                          ComputeSelfRewards(model, layout, queries, max_batch, r.kinds));
    if (r.self_weight == 1.0) return self;  // the default: the self-reward as it is
    for (double& x : self) x *= r.self_weight;
    return self;
  }
  if (r.external == nullptr) {
    return absl::FailedPreconditionError(
        "scorer: an external reward weight without a reward service");
  }
  // The service first: when it fails, no model pass is spent.
  DUET_ASSIGN_OR_RETURN(std::vector<double> mixed, r.external->Score(queries));
  for (double& x : mixed) x *= r.external_weight;
  if (r.self_weight != 0.0) {
    DUET_ASSIGN_OR_RETURN(std::vector<double> self,
                          ComputeSelfRewards(model, layout, queries, max_batch, r.kinds));
    for (size_t i = 0; i < mixed.size(); ++i) mixed[i] += r.self_weight * self[i];
  }
  return mixed;
}

absl::Status HandleScoreItem(const Transformer& model, const TokenLayout& layout,
                             int64_t max_batch, const v1::WorkItem& item,
                             v1::CompleteWorkRequest* result,
                             const ScorerRewards& rewards) {
  if (!item.has_score())
    return absl::InvalidArgumentError("item: a scorer takes score items");
  DUET_ASSIGN_OR_RETURN(std::vector<RewardQuery> queries,
                        FromProto(item.score(), layout));
  DUET_ASSIGN_OR_RETURN(std::vector<double> out,
                        ComputeScorerRewards(model, layout, queries, max_batch, rewards));
  result->mutable_score()->mutable_rewards()->Assign(out.begin(), out.end());
  return absl::OkStatus();
}

absl::Status HandleScoreItem(const Transformer& model, const TokenLayout& layout,
                             int64_t max_batch, const v1::WorkItem& item,
                             v1::CompleteWorkRequest* result,
                             const SelfRewardKinds& kinds) {
  ScorerRewards rewards;
  rewards.kinds = kinds;
  return HandleScoreItem(model, layout, max_batch, item, result, rewards);
}

}  // namespace duet
