#include "rollout/handler.h"

#include "common/base/status_macros.h"
#include "common/rpc/proto_convert.h"
#include "rollout/sampler.h"

namespace duet {

absl::Status HandleRolloutItem(const Transformer& model, const TokenLayout& layout,
                               int64_t version, int64_t max_batch,
                               const v1::WorkItem& item,
                               v1::CompleteWorkRequest* result) {
  if (!item.has_rollout())
    return absl::InvalidArgumentError("item: a rollout worker takes rollout items");
  DUET_ASSIGN_OR_RETURN(RolloutRequest req, FromProto(item.rollout(), layout));
  DUET_ASSIGN_OR_RETURN(std::vector<Group> groups,
                        SampleGroups(model, layout, req, version, max_batch));
  ToProto(groups, result->mutable_rollout());
  return absl::OkStatus();
}

}  // namespace duet
