#ifndef DUET_ROLLOUT_SAMPLER_H_
#define DUET_ROLLOUT_SAMPLER_H_

// The rollout worker's core: K samples per input with the batched KV-cached decoder
// (classifier-free guidance for images). Independent of any transport.
//
// Thread-safety: free function; reads the model only.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/generation.h"
#include "common/work/task.h"

namespace duet {

uint64_t SampleSeed(uint64_t seed, uint64_t input, uint64_t sample);

// Returns one Group per input with request.k samples (reward unset, policy_version as
// given), decoding at most `max_batch` rows at a time. InvalidArgument for bad inputs or
// parameters (naming the field).
absl::StatusOr<std::vector<Group>> SampleGroups(const Transformer& model,
                                                const TokenLayout& layout,
                                                const RolloutRequest& request,
                                                int64_t policy_version,
                                                int64_t max_batch = 256);

// The rollout backend of a single process: samples with a model it does not own.
// Thread-compatible (the caller serializes weight updates with Sample).
class InProcessRollout : public RolloutBackend {
 public:
  InProcessRollout(const Transformer* model, TokenLayout layout)
      : model_(model), layout_(layout) {}
  // The samples carry request.policy_version: the model is the learner's own policy.
  absl::StatusOr<std::vector<Group>> Sample(const RolloutRequest& request) override {
    return SampleGroups(*model_, layout_, request, request.policy_version);
  }

 private:
  const Transformer* model_;
  TokenLayout layout_;
};

}  // namespace duet

#endif  // DUET_ROLLOUT_SAMPLER_H_
