#ifndef DUET_COMMON_MODEL_SAMPLING_H_
#define DUET_COMMON_MODEL_SAMPLING_H_

// Token sampling with a seed per row: the random number that picks row b's token at step
// t is a pure function of (seed[b], t), so a sequence's sample does not depend on which
// batch it ran in or at which row. (The logits themselves can differ in the last bits
// between batch sizes because BLAS picks different kernels; a sample sitting exactly on a
// boundary between two tokens could then flip. That is the only batch dependence.)

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace duet {

struct SamplingParams {
  // 0 means greedy (argmax); otherwise logits are divided by it.
  double temperature = 1.0;
  // Keep only the k most likely tokens (0 = off).
  int64_t top_k = 0;
  // Keep the smallest set of most likely tokens whose mass reaches top_p (1 = off).
  double top_p = 1.0;

  // InvalidArgument naming the field: temperature finite and >= 0, top_k >= 0,
  // top_p in (0, 1].
  absl::Status Validate() const;
};

// Uniform double in [0, 1) from (seed, step): SplitMix64 of a mix of both.
double SeededUniform(uint64_t seed, uint64_t step);

struct SampledTokens {
  torch::Tensor tokens;    // [B] int64
  torch::Tensor logprobs;  // [B] float: log-probability of the token under the
                           // distribution it was drawn from (temperature, mask, top-k/p)
};

// Samples one token per row from logits [B, V]. `allowed` is an optional [V] or [B, V]
// bool mask of legal tokens (illegal tokens get probability 0 and are never drawn).
// REQUIRES: seeds.size() == B; params validated; every row has a legal token.
SampledTokens SampleTokens(const torch::Tensor& logits, const torch::Tensor& allowed,
                           const SamplingParams& params,
                           const std::vector<uint64_t>& seeds, uint64_t step);

}  // namespace duet

#endif  // DUET_COMMON_MODEL_SAMPLING_H_
