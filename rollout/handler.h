#ifndef DUET_ROLLOUT_HANDLER_H_
#define DUET_ROLLOUT_HANDLER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/model/token_layout.h"
#include "common/model/transformer.h"
#include "duet/v1/coordinator.pb.h"

namespace duet {

// The rollout worker's WorkHandler: validates item.rollout() (InvalidArgument naming the
// field), samples K outputs per input, fills result->rollout().
absl::Status HandleRolloutItem(const Transformer& model, const TokenLayout& layout,
                               int64_t version, int64_t max_batch,
                               const v1::WorkItem& item, v1::CompleteWorkRequest* result);

}  // namespace duet

#endif  // DUET_ROLLOUT_HANDLER_H_
