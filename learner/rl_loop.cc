#include "learner/rl_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "learner/rl_objective.h"

namespace duet {
namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double StdDev(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  return std::sqrt(var / static_cast<double>(v.size()));
}

}  // namespace

DirectionStats ComputeDirectionStats(const std::vector<Group>& groups, Task task) {
  DirectionStats d;
  std::vector<double> all, advantages;
  double group_std_sum = 0;
  int64_t zero_variance = 0;
  for (const Group& g : groups) {
    if (g.task != task) continue;
    ++d.groups;
    std::vector<double> rewards;
    for (const Sample& s : g.samples) {
      rewards.push_back(s.reward);
      d.tokens += static_cast<int64_t>(s.output.size());
    }
    d.samples += static_cast<int64_t>(rewards.size());
    all.insert(all.end(), rewards.begin(), rewards.end());
    group_std_sum += StdDev(rewards);
    zero_variance += std::all_of(rewards.begin(), rewards.end(), [&](double r) { return r == rewards.front(); }) ? 1 : 0;
    const std::vector<double> a = GroupAdvantages(rewards);
    advantages.insert(advantages.end(), a.begin(), a.end());
  }
  if (d.groups > 0) {
    d.reward_std = StdDev(all);
    d.reward_group_std = group_std_sum / static_cast<double>(d.groups);
    d.zero_variance_groups_ratio = static_cast<double>(zero_variance) / static_cast<double>(d.groups);
    d.advantage_std = StdDev(advantages);
  }
  return d;
}

RlLoop::RlLoop(PolicyUpdater* updater, RolloutBackend* rollout, ScoreBackend* scorer,
               std::vector<std::vector<int64_t>> prompts, std::vector<std::vector<int64_t>> images,
               RlRecipe recipe, int64_t start_version)
    : updater_(updater),
      rollout_(rollout),
      scorer_(scorer),
      prompts_(std::move(prompts)),
      images_(std::move(images)),
      recipe_(recipe),
      version_(start_version) {}

std::vector<std::vector<int64_t>> RlLoop::Pick(const std::vector<std::vector<int64_t>>& pool,
                                               int64_t n, int64_t step, uint64_t salt) const {
  // Epoch e visits the pool in a permutation seeded by (seed, salt, e).
  std::vector<std::vector<int64_t>> out;
  if (pool.empty()) return out;
  const int64_t size = static_cast<int64_t>(pool.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = step * n + i;
    const int64_t epoch = pos / size;
    std::vector<int64_t> perm(size);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(recipe_.seed * 0x9E3779B97F4A7C15ULL + salt * 7919 + epoch);
    std::shuffle(perm.begin(), perm.end(), rng);
    out.push_back(pool[perm[pos % size]]);
  }
  return out;
}

absl::StatusOr<StepReport> RlLoop::RunStep(int64_t step) {
  StepReport report;
  report.step = step;
  std::vector<Group> groups;
  auto t0 = std::chrono::steady_clock::now();
  for (Task task : {Task::kGeneration, Task::kUnderstanding}) {
    const bool gen = task == Task::kGeneration;
    const int64_t n = gen ? recipe_.generation_inputs : recipe_.understanding_inputs;
    if (n <= 0) continue;
    RolloutRequest req;
    req.task = task;
    req.inputs = Pick(gen ? prompts_ : images_, n, step, gen ? 1 : 2);
    if (req.inputs.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("no ", std::string(TaskName(task)), " inputs to train on"));
    }
    req.k = recipe_.k;
    req.sampling = gen ? recipe_.image_sampling : recipe_.caption_sampling;
    req.cfg_scale = gen ? recipe_.cfg_scale : std::nullopt;
    req.seed = recipe_.seed * 1000003ULL + static_cast<uint64_t>(step) * 2 + (gen ? 0 : 1);
    req.policy_version = version_;
    DUET_ASSIGN_OR_RETURN(std::vector<Group> g, rollout_->Sample(req));
    for (auto& x : g) groups.push_back(std::move(x));
  }
  report.rollout_seconds = Seconds(t0);

  t0 = std::chrono::steady_clock::now();
  std::vector<RewardQuery> queries;
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) queries.push_back({g.task, g.input, s.output});
  }
  DUET_ASSIGN_OR_RETURN(std::vector<double> rewards, scorer_->Score(queries, version_));
  if (rewards.size() != queries.size()) {
    return absl::InternalError(absl::StrCat("scorer returned ", rewards.size(), " rewards for ",
                                            queries.size(), " queries"));
  }
  size_t qi = 0;
  double gen_sum = 0, und_sum = 0;
  int64_t gen_n = 0, und_n = 0;
  for (Group& g : groups) {
    for (Sample& s : g.samples) {
      s.reward = rewards[qi++];
      if (g.task == Task::kGeneration) {
        gen_sum += s.reward;
        ++gen_n;
      } else {
        und_sum += s.reward;
        ++und_n;
      }
    }
  }
  report.generation_reward = gen_n ? gen_sum / gen_n : 0;
  report.understanding_reward = und_n ? und_sum / und_n : 0;
  report.samples = gen_n + und_n;
  report.generation_stats = ComputeDirectionStats(groups, Task::kGeneration);
  report.understanding_stats = ComputeDirectionStats(groups, Task::kUnderstanding);
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) {
      report.max_sample_lag = std::max(report.max_sample_lag, version_ - s.policy_version);
    }
  }
  report.score_seconds = Seconds(t0);

  t0 = std::chrono::steady_clock::now();
  // The samples were drawn at the current version: the recomputed log-probs must agree.
  DUET_ASSIGN_OR_RETURN(report.logprob_max_diff,
                        updater_->MaxLogprobDifference(groups, recipe_.consistency_samples));
  DUET_ASSIGN_OR_RETURN(report.update, updater_->Update(groups, version_, recipe_.max_lag));
  ++version_;
  report.policy_version = version_;
  report.update_seconds = Seconds(t0);
  return report;
}

}  // namespace duet
