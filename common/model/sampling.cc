#include "common/model/sampling.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace duet {

absl::Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature must be finite and >= 0, got ", temperature));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k must be >= 0, got ", top_k));
  }
  if (!std::isfinite(top_p) || top_p <= 0 || top_p > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p must be in (0, 1], got ", top_p));
  }
  return absl::OkStatus();
}

double SeededUniform(uint64_t seed, uint64_t step) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + (step + 1) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

SampledTokens SampleTokens(const torch::Tensor& logits, const torch::Tensor& allowed,
                           const SamplingParams& params,
                           const std::vector<uint64_t>& seeds, uint64_t step) {
  const int64_t b = logits.size(0);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  torch::Tensor l = logits.to(torch::kFloat32);
  if (allowed.defined()) l = l.masked_fill(allowed.logical_not(), neg_inf);
  SampledTokens out;
  if (params.temperature == 0) {
    torch::Tensor lp = torch::log_softmax(l, -1);
    out.tokens = l.argmax(-1);
    out.logprobs = lp.gather(1, out.tokens.unsqueeze(1)).squeeze(1);
    return out;
  }
  l = l / params.temperature;
  if (params.top_k > 0 && params.top_k < l.size(1)) {
    torch::Tensor kth =
        std::get<0>(l.topk(params.top_k, -1)).narrow(1, params.top_k - 1, 1);
    l = l.masked_fill(l < kth, neg_inf);
  }
  torch::Tensor probs = torch::softmax(l, -1);
  if (params.top_p < 1.0) {
    auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    torch::Tensor before = sorted.cumsum(-1) - sorted;  // mass strictly before each token
    torch::Tensor drop_sorted = before >= params.top_p;  // the first token is always kept
    torch::Tensor drop = torch::zeros_like(drop_sorted).scatter(1, order, drop_sorted);
    probs = probs.masked_fill(drop, 0.0);
    probs = probs / probs.sum(-1, /*keepdim=*/true);
  }
  torch::Tensor cdf = probs.to(torch::kFloat64).cumsum(-1);
  std::vector<double> u(b);
  for (int64_t i = 0; i < b; ++i) u[i] = SeededUniform(seeds[i], step);
  torch::Tensor ut =
      torch::tensor(u, torch::kFloat64).unsqueeze(1) * cdf.narrow(1, cdf.size(1) - 1, 1);
  // First index whose cdf exceeds u: zero-probability tokens are never chosen.
  out.tokens = (cdf <= ut).sum(-1).clamp_max(probs.size(1) - 1);
  out.logprobs = probs.gather(1, out.tokens.unsqueeze(1)).squeeze(1).log();
  return out;
}

}  // namespace duet
