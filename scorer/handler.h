#ifndef DUET_SCORER_HANDLER_H_
#define DUET_SCORER_HANDLER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "duet/v1/coordinator.pb.h"
#include "model/reward_kind.h"
#include "model/token_layout.h"
#include "model/transformer.h"

namespace duet {

// The scorer worker's WorkHandler: validates item.score() (InvalidArgument naming the
// field), computes one self-reward of `kinds` per query, fills result->score().
absl::Status HandleScoreItem(const Transformer& model, const TokenLayout& layout, int64_t max_batch,
                             const v1::WorkItem& item, v1::CompleteWorkRequest* result,
                             const SelfRewardKinds& kinds = SelfRewardKinds());

}  // namespace duet

#endif  // DUET_SCORER_HANDLER_H_
