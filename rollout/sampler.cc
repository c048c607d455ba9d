#include "rollout/sampler.h"

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/model/sampling.h"

namespace duet {

uint64_t SampleSeed(uint64_t seed, uint64_t input, uint64_t sample) {
  const double u = SeededUniform(seed ^ (input * 0x9E3779B97F4A7C15ULL), sample);
  return static_cast<uint64_t>(u * 9007199254740992.0);
}

absl::StatusOr<std::vector<Group>> SampleGroups(const Transformer& model,
                                                const TokenLayout& layout,
                                                const RolloutRequest& r,
                                                int64_t policy_version,
                                                int64_t max_batch) {
  if (r.k < 1 || r.k > 64) {
    return absl::InvalidArgumentError(absl::StrCat("k must be in [1, 64], got ", r.k));
  }
  if (max_batch < 1) return absl::InvalidArgumentError("max_batch must be positive");
  // Flatten (input, sample) pairs into decoder rows.
  TokenRows rows;
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    for (int64_t j = 0; j < r.k; ++j) {
      rows.push_back(r.inputs[i]);
      seeds.push_back(SampleSeed(r.seed, r.input_offset + i, j));
    }
  }
  std::vector<Group> groups(r.inputs.size());
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    groups[i].task = r.task;
    groups[i].input = r.inputs[i];
  }
  for (size_t begin = 0; begin < rows.size(); begin += max_batch) {
    const size_t end = std::min(rows.size(), begin + static_cast<size_t>(max_batch));
    TokenRows chunk(rows.begin() + begin, rows.begin() + end);
    std::vector<uint64_t> chunk_seeds(seeds.begin() + begin, seeds.begin() + end);
    GeneratedSequences out;
    if (r.task == Task::kGeneration) {
      ImageGenerationOptions opts{r.sampling, r.cfg_scale};
      DUET_ASSIGN_OR_RETURN(out, GenerateImages(model, layout, chunk, chunk_seeds, opts));
    } else {
      DUET_ASSIGN_OR_RETURN(
          out, GenerateCaptions(model, layout, chunk, chunk_seeds, r.sampling));
    }
    for (size_t row = begin; row < end; ++row) {
      Sample s;
      s.output = std::move(out.tokens[row - begin]);
      s.policy_logprobs = std::move(out.policy_logprobs[row - begin]);
      s.policy_version = policy_version;
      groups[row / r.k].samples.push_back(std::move(s));
    }
  }
  return groups;
}

}  // namespace duet
