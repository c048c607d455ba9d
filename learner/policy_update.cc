#include "learner/policy_update.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/model/generation.h"

namespace duet {

TrainingRow MakeTrainingRow(const TokenLayout& layout, Task task,
                            const std::vector<int64_t>& input,
                            const std::vector<int64_t>& output) {
  TrainingRow r;
  r.tokens = task == Task::kGeneration ? DrawPrompt(layout, input)
                                       : DescribePrompt(layout, input);
  r.target_begin = static_cast<int64_t>(r.tokens.size());
  r.tokens.insert(r.tokens.end(), output.begin(), output.end());
  r.target_end = static_cast<int64_t>(r.tokens.size());
  return r;
}

std::pair<torch::Tensor, torch::Tensor> TargetLogprobs(
    const Transformer& model, const std::vector<TrainingRow>& rows, int64_t pad) {
  size_t len = 0;
  for (const auto& r : rows) len = std::max(len, r.tokens.size());
  const int64_t n = static_cast<int64_t>(rows.size()), t = static_cast<int64_t>(len);
  torch::Tensor tokens = torch::full({n, t}, pad, torch::kInt64);
  torch::Tensor mask = torch::zeros({n, t - 1}, torch::kFloat32);
  auto ta = tokens.accessor<int64_t, 2>();
  auto ma = mask.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < rows[i].tokens.size(); ++j) ta[i][j] = rows[i].tokens[j];
    for (int64_t j = rows[i].target_begin; j < rows[i].target_end; ++j)
      ma[i][j - 1] = 1.0f;
  }
  torch::Tensor logits = model.ForwardUnchecked(tokens, torch::Tensor());
  torch::Tensor lp = torch::log_softmax(logits.narrow(1, 0, t - 1), -1)
                         .gather(2, tokens.narrow(1, 1, t - 1).unsqueeze(2))
                         .squeeze(2);
  return {lp, mask};
}

namespace {

// Behaviour log-probs laid out like TargetLogprobs: [N, L-1].
torch::Tensor BehaviourLogprobs(const std::vector<TrainingRow>& rows,
                                const std::vector<const Sample*>& samples,
                                int64_t width) {
  torch::Tensor out =
      torch::zeros({static_cast<int64_t>(rows.size()), width}, torch::kFloat32);
  auto a = out.accessor<float, 2>();
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t j = rows[i].target_begin; j < rows[i].target_end; ++j) {
      a[i][j - 1] = samples[i]->policy_logprobs[j - rows[i].target_begin];
    }
  }
  return out;
}

// Every sample is trainable: as many log-probs as tokens, a finite reward, and a row
// CheckTrainableRow accepts.
absl::Status CheckGroups(const std::vector<Group>& groups, const TokenLayout& layout,
                         int64_t max_tokens) {
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t s = 0; s < groups[g].samples.size(); ++s) {
      const Sample& x = groups[g].samples[s];
      if (x.output.empty() || x.output.size() != x.policy_logprobs.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("group ", g, " sample ", s, ": ", x.output.size(),
                         " tokens but ", x.policy_logprobs.size(), " log-probs"));
      }
      if (!std::isfinite(x.reward)) {
        return absl::InvalidArgumentError(
            absl::StrCat("group ", g, " sample ", s, ": reward is not finite"));
      }
      if (absl::Status row = CheckTrainableRow(layout, max_tokens, groups[g].task,
                                               groups[g].input, x.output);
          !row.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("group ", g, " sample ", s, ": ", row.message()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTrainableRow(const TokenLayout& layout, int64_t max_tokens, Task task,
                               const std::vector<int64_t>& input,
                               const std::vector<int64_t>& output) {
  for (const std::vector<int64_t>* ids : {&input, &output}) {
    for (int64_t id : *ids) {
      if (id < 0 || id >= layout.vocab_size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " outside [0, ", layout.vocab_size(), ")"));
      }
    }
  }
  const int64_t row =
      static_cast<int64_t>(MakeTrainingRow(layout, task, input, output).tokens.size());
  if (row > max_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the training row has ", row, " tokens, the model's context is ", max_tokens));
  }
  return absl::OkStatus();
}

PolicyUpdater::PolicyUpdater(Transformer* policy, const Transformer* reference,
                             TokenLayout layout, RlOptimizerOptions options)
    : policy_(policy),
      reference_(reference),
      layout_(layout),
      options_(options),
      optimizer_(policy->parameters(),
                 AdamWOptions{.lr = options.lr, .weight_decay = options.weight_decay}) {}

absl::StatusOr<UpdateStats> PolicyUpdater::Update(const std::vector<Group>& groups,
                                                  int64_t policy_version,
                                                  int64_t max_lag) {
  DUET_RETURN_IF_ERROR(
      CheckGroups(groups, layout_, policy_->config().max_position_embeddings));
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) {
      if (s.policy_version > policy_version ||
          s.policy_version < policy_version - max_lag) {
        return absl::FailedPreconditionError(absl::StrCat(
            "a sample from policy version ", s.policy_version, " cannot update version ",
            policy_version, " (at most ", max_lag, " behind)"));
      }
    }
  }
  try {
    return options_.algorithm == RlAlgorithm::kGrpo ? UpdateGrpo(groups)
                                                    : UpdateSimpo(groups);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("policy update: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<UpdateStats> PolicyUpdater::UpdateGrpo(const std::vector<Group>& groups) {
  std::vector<TrainingRow> rows;
  std::vector<const Sample*> samples;
  std::vector<double> advantages;
  for (const Group& g : groups) {
    std::vector<double> rewards;
    for (const Sample& s : g.samples) rewards.push_back(s.reward);
    std::vector<double> adv = GroupAdvantages(rewards);
    const double weight =
        g.task == Task::kUnderstanding ? options_.grpo.understanding_weight : 1.0;
    for (size_t i = 0; i < g.samples.size(); ++i) {
      rows.push_back(MakeTrainingRow(layout_, g.task, g.input, g.samples[i].output));
      samples.push_back(&g.samples[i]);
      advantages.push_back(adv[i] * weight);
    }
  }
  UpdateStats stats;
  stats.samples = static_cast<int64_t>(rows.size());
  if (rows.empty()) return stats;
  int64_t total_tokens = 0;
  for (const auto& r : rows) total_tokens += r.target_end - r.target_begin;
  policy_->SetRequiresGrad(true);
  optimizer_.ZeroGrad();
  const bool use_kl = options_.grpo.kl_coef != 0 && reference_ != nullptr;
  double kl_sum = 0, clip_sum = 0, loss_sum = 0;
  for (size_t begin = 0; begin < rows.size(); begin += options_.micro_batch) {
    const size_t end =
        std::min(rows.size(), begin + static_cast<size_t>(options_.micro_batch));
    std::vector<TrainingRow> mb(rows.begin() + begin, rows.begin() + end);
    std::vector<const Sample*> mb_samples(samples.begin() + begin, samples.begin() + end);
    auto [logp, mask] = TargetLogprobs(*policy_, mb, layout_.pad);
    torch::Tensor old = BehaviourLogprobs(mb, mb_samples, logp.size(1));
    torch::Tensor ref;
    if (use_kl) {
      torch::NoGradGuard ng;
      ref = TargetLogprobs(*reference_, mb, layout_.pad).first;
    }
    torch::Tensor adv = torch::tensor(
        std::vector<double>(advantages.begin() + begin, advantages.begin() + end),
        torch::kFloat32);
    LossStats ls;
    torch::Tensor loss = GrpoLoss(logp, old, ref, mask, adv, options_.grpo, &ls);
    // Re-weight the micro-batch's token mean into the batch's token mean.
    const double w = static_cast<double>(ls.tokens) / total_tokens;
    (loss * w).backward();
    kl_sum += ls.kl * ls.tokens;
    clip_sum += ls.clip_fraction * ls.tokens;
    loss_sum += ls.loss * ls.tokens;
  }
  stats.grad_norm = optimizer_.ClipGradNorm(options_.grad_clip);
  optimizer_.Step(options_.lr);
  optimizer_.ZeroGrad();
  policy_->SetRequiresGrad(false);
  stats.loss.tokens = total_tokens;
  stats.loss.kl = kl_sum / total_tokens;
  stats.loss.clip_fraction = clip_sum / total_tokens;
  stats.loss.loss = loss_sum / total_tokens;
  return stats;
}

absl::StatusOr<UpdateStats> PolicyUpdater::UpdateSimpo(const std::vector<Group>& groups) {
  // Rows 2p and 2p+1 are pair p's chosen and rejected samples.
  std::vector<TrainingRow> rows;
  for (const Group& g : groups) {
    if (g.samples.size() < 2) continue;
    auto [lo, hi] = std::minmax_element(
        g.samples.begin(), g.samples.end(),
        [](const Sample& a, const Sample& b) { return a.reward < b.reward; });
    if (hi->reward == lo->reward) continue;  // no preference
    rows.push_back(MakeTrainingRow(layout_, g.task, g.input, hi->output));
    rows.push_back(MakeTrainingRow(layout_, g.task, g.input, lo->output));
  }
  UpdateStats stats;
  stats.pairs = static_cast<int64_t>(rows.size() / 2);
  stats.samples = static_cast<int64_t>(rows.size());
  if (rows.empty()) return stats;
  policy_->SetRequiresGrad(true);
  optimizer_.ZeroGrad();
  double loss_sum = 0, margin_sum = 0;
  int64_t tokens = 0;
  const size_t step =
      std::max<size_t>(2, static_cast<size_t>(options_.micro_batch) / 2 * 2);
  for (size_t begin = 0; begin < rows.size(); begin += step) {
    const size_t end = std::min(rows.size(), begin + step);
    std::vector<TrainingRow> mb(rows.begin() + begin, rows.begin() + end);
    auto [logp, mask] = TargetLogprobs(*policy_, mb, layout_.pad);
    torch::Tensor sums = (logp * mask).sum(1).view({-1, 2});
    torch::Tensor lens = mask.sum(1).view({-1, 2});
    LossStats ls;
    torch::Tensor loss =
        SimpoLoss(sums.select(1, 0), lens.select(1, 0), sums.select(1, 1),
                  lens.select(1, 1), options_.simpo, &ls);
    const double pairs = static_cast<double>(mb.size() / 2);
    (loss * (pairs / stats.pairs)).backward();
    loss_sum += ls.loss * pairs;
    margin_sum += ls.margin * pairs;
    tokens += ls.tokens;
  }
  stats.grad_norm = optimizer_.ClipGradNorm(options_.grad_clip);
  optimizer_.Step(options_.lr);
  optimizer_.ZeroGrad();
  policy_->SetRequiresGrad(false);
  stats.loss.loss = loss_sum / stats.pairs;
  stats.loss.margin = margin_sum / stats.pairs;
  stats.loss.tokens = tokens;
  return stats;
}

absl::StatusOr<double> PolicyUpdater::MaxLogprobDifference(
    const std::vector<Group>& groups, int64_t max_samples) const {
  DUET_RETURN_IF_ERROR(
      CheckGroups(groups, layout_, policy_->config().max_position_embeddings));
  std::vector<TrainingRow> rows;
  std::vector<const Sample*> samples;
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) {
      if (static_cast<int64_t>(rows.size()) >= max_samples) break;
      rows.push_back(MakeTrainingRow(layout_, g.task, g.input, s.output));
      samples.push_back(&s);
    }
  }
  if (rows.empty()) return 0.0;
  try {
    torch::InferenceMode guard;
    auto [logp, mask] = TargetLogprobs(*policy_, rows, layout_.pad);
    torch::Tensor old = BehaviourLogprobs(rows, samples, logp.size(1));
    return ((logp - old).abs() * mask).max().item<double>();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("log-prob check: ", e.what_without_backtrace()));
  }
}

}  // namespace duet
