#include "learner/rl_objective.h"

#include <torch/torch.h>

#include <cmath>

namespace duet {

std::vector<double> GroupAdvantages(const std::vector<double>& rewards, double eps) {
  std::vector<double> out(rewards.size(), 0.0);
  if (rewards.empty()) return out;
  double mean = 0;
  for (double r : rewards) mean += r;
  mean /= rewards.size();
  double var = 0;
  for (double r : rewards) var += (r - mean) * (r - mean);
  const double std = std::sqrt(var / rewards.size());
  // A group whose rewards are all equal (up to rounding of the mean) carries no signal.
  if (std <= 1e-9 * std::max(1.0, std::abs(mean))) return out;
  for (size_t i = 0; i < rewards.size(); ++i) out[i] = (rewards[i] - mean) / (std + eps);
  return out;
}

torch::Tensor KlK3(const torch::Tensor& logp, const torch::Tensor& ref_logp) {
  torch::Tensor d = ref_logp - logp;
  return torch::exp(d) - d - 1;
}

torch::Tensor GrpoLoss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                       const torch::Tensor& ref_logp, const torch::Tensor& mask,
                       const torch::Tensor& advantages, const GrpoOptions& o,
                       LossStats* stats) {
  const torch::Tensor n_tokens = mask.sum().clamp_min(1);
  torch::Tensor ratio = torch::exp(logp - old_logp);
  torch::Tensor adv = advantages.unsqueeze(1);
  torch::Tensor surrogate =
      torch::min(ratio * adv, torch::clamp(ratio, 1 - o.clip_eps, 1 + o.clip_eps) * adv);
  torch::Tensor per_token = -surrogate;
  torch::Tensor kl;
  if (o.kl_coef != 0 && ref_logp.defined()) {
    kl = KlK3(logp, ref_logp);
    per_token = per_token + o.kl_coef * kl;
  }
  torch::Tensor loss = (per_token * mask).sum() / n_tokens;
  if (stats != nullptr) {
    torch::NoGradGuard ng;
    stats->loss = loss.item<double>();
    stats->tokens = static_cast<int64_t>(mask.sum().item<double>());
    stats->kl = kl.defined() ? ((kl * mask).sum() / n_tokens).item<double>() : 0.0;
    torch::Tensor clipped = ((ratio - 1).abs() > o.clip_eps).to(torch::kFloat32);
    stats->clip_fraction = ((clipped * mask).sum() / n_tokens).item<double>();
  }
  return loss;
}

torch::Tensor SimpoLoss(const torch::Tensor& logp_sum_w, const torch::Tensor& len_w,
                        const torch::Tensor& logp_sum_l, const torch::Tensor& len_l,
                        const SimpoOptions& o, LossStats* stats) {
  torch::Tensor margin = logp_sum_w / len_w - logp_sum_l / len_l;
  torch::Tensor loss = -torch::log_sigmoid(o.beta * margin - o.gamma).mean();
  if (stats != nullptr) {
    torch::NoGradGuard ng;
    stats->loss = loss.item<double>();
    stats->margin = margin.mean().item<double>();
    stats->tokens = static_cast<int64_t>((len_w.sum() + len_l.sum()).item<double>());
  }
  return loss;
}

}  // namespace duet
