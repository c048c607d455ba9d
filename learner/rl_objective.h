#ifndef DUET_LEARNER_RL_OBJECTIVE_H_
#define DUET_LEARNER_RL_OBJECTIVE_H_

// The two RL objectives of the paper, as pure tensor functions.
//
// GRPO: group-relative advantages A_i = (r_i - mean(r)) / (std(r) + eps) over the K
// samples of one input (population std); token-level PPO-clipped surrogate with
// importance ratio exp(logp - logp_behaviour); KL to the reference with the k3 estimator
// k3 = exp(ref - logp) - (ref - logp) - 1 (unbiased, always >= 0). The loss is averaged
// over every target token of the batch.
//
// SimPO: the best and worst sample of a group form a preference pair; reference-free,
// length-normalised: -log sigmoid(beta * (logp_w / |y_w| - logp_l / |y_l|) - gamma).

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace duet {

std::vector<double> GroupAdvantages(const std::vector<double>& rewards,
                                    double eps = 1e-6);

// Per-token k3 estimate of KL(policy || reference) from log-probs of the sampled tokens.
torch::Tensor KlK3(const torch::Tensor& logp, const torch::Tensor& ref_logp);

struct GrpoOptions {
  double clip_eps = 0.2;
  double kl_coef = 0.02;
  // Multiplies the advantages of understanding (caption) samples: the balance of the two
  // directions in a joint step. Every output token counts once in GRPO's token mean, and
  // a caption has ~7 tokens against an image's 36, so at 1.0 captions carry ~9% of a
  // default joint step's policy gradient. The KL term is not scaled. >= 0.
  double understanding_weight = 1.0;
};

struct LossStats {
  double loss = 0;
  double kl = 0;             // mean k3 per token (GRPO)
  double clip_fraction = 0;  // share of tokens whose ratio was clipped (GRPO)
  double margin = 0;         // mean normalised log-prob margin of pairs (SimPO)
  int64_t tokens = 0;
};

// logp, old_logp, ref_logp, mask: [N, L] (mask 1 on target tokens); advantages: [N].
// ref_logp may be undefined when kl_coef is 0. Differentiable in logp.
torch::Tensor GrpoLoss(const torch::Tensor& logp, const torch::Tensor& old_logp,
                       const torch::Tensor& ref_logp, const torch::Tensor& mask,
                       const torch::Tensor& advantages, const GrpoOptions& options,
                       LossStats* stats);

struct SimpoOptions {
  double beta = 2.0;
  double gamma = 1.0;
};

// Sums of log-probs and token counts of the chosen (w) and rejected (l) samples: [P]
// each.
torch::Tensor SimpoLoss(const torch::Tensor& logp_sum_w, const torch::Tensor& len_w,
                        const torch::Tensor& logp_sum_l, const torch::Tensor& len_l,
                        const SimpoOptions& options, LossStats* stats);

}  // namespace duet

#endif  // DUET_LEARNER_RL_OBJECTIVE_H_
