#include "learner/rl_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
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
    zero_variance += std::all_of(rewards.begin(), rewards.end(),
                                 [&](double r) { return r == rewards.front(); })
                         ? 1
                         : 0;
    const std::vector<double> a = GroupAdvantages(rewards);
    advantages.insert(advantages.end(), a.begin(), a.end());
  }
  if (d.groups > 0) {
    d.reward_std = StdDev(all);
    d.reward_group_std = group_std_sum / static_cast<double>(d.groups);
    d.zero_variance_groups_ratio =
        static_cast<double>(zero_variance) / static_cast<double>(d.groups);
    d.advantage_std = StdDev(advantages);
  }
  return d;
}

RlLoop::RlLoop(PolicyUpdater* updater, RolloutBackend* rollout, ScoreBackend* scorer,
               std::vector<std::vector<int64_t>> prompts,
               std::vector<std::vector<int64_t>> images, RlRecipe recipe,
               int64_t start_version)
    : updater_(updater),
      rollout_(rollout),
      scorer_(scorer),
      prompts_(std::move(prompts)),
      images_(std::move(images)),
      recipe_(recipe),
      version_(start_version) {}

std::vector<std::vector<int64_t>> RlLoop::Pick(
    const std::vector<std::vector<int64_t>>& pool, int64_t n, int64_t step, uint64_t salt,
    std::vector<int64_t>* indices) const {
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
    if (indices != nullptr) indices->push_back(perm[pos % size]);
  }
  return out;
}

RlLoop::~RlLoop() {
  for (auto& [step, c] : in_flight_) c->stop.store(true);
  for (auto& [step, c] : in_flight_) {
    if (c->thread.joinable()) c->thread.join();
  }
}

std::vector<int64_t> RlLoop::CollectionsInFlight() const {
  std::vector<int64_t> out;
  for (const auto& [step, c] : in_flight_) out.push_back(step);
  return out;
}

absl::StatusOr<RlLoop::Collected> RlLoop::Collect(int64_t step, int64_t version,
                                                  const std::atomic<bool>* stop) const {
  Collected out;
  std::vector<Group>& groups = out.groups;
  auto t0 = std::chrono::steady_clock::now();
  for (Task task : {Task::kGeneration, Task::kUnderstanding}) {
    const bool gen = task == Task::kGeneration;
    const int64_t n = gen ? recipe_.generation_inputs : recipe_.understanding_inputs;
    if (n <= 0) continue;
    RolloutRequest req;
    req.task = task;
    std::vector<int64_t> picked;
    req.inputs = Pick(gen ? prompts_ : images_, n, step, gen ? 1 : 2, &picked);
    if (req.inputs.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("no ", std::string(TaskName(task)), " inputs to train on"));
    }
    req.k = recipe_.k;
    req.sampling = gen ? recipe_.image_sampling : recipe_.caption_sampling;
    req.cfg_scale = gen ? recipe_.cfg_scale : std::nullopt;
    req.seed =
        recipe_.seed * 1000003ULL + static_cast<uint64_t>(step) * 2 + (gen ? 0 : 1);
    req.policy_version = version;
    DUET_ASSIGN_OR_RETURN(std::vector<Group> g, rollout_->Sample(req));
    for (size_t i = 0; i < g.size() && i < picked.size(); ++i)
      g[i].input_index = picked[i];
    for (auto& x : g) groups.push_back(std::move(x));
  }
  out.rollout_seconds = Seconds(t0);
  if (stop != nullptr && stop->load())
    return absl::CancelledError("collection abandoned");

  t0 = std::chrono::steady_clock::now();
  std::vector<RewardQuery> queries;
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) queries.push_back({g.task, g.input, s.output});
  }
  DUET_ASSIGN_OR_RETURN(std::vector<double> rewards, scorer_->Score(queries, version));
  if (rewards.size() != queries.size()) {
    return absl::InternalError(absl::StrCat("scorer returned ", rewards.size(),
                                            " rewards for ", queries.size(), " queries"));
  }
  size_t qi = 0;
  for (Group& g : groups) {
    for (Sample& s : g.samples) s.reward = rewards[qi++];
  }
  out.score_seconds = Seconds(t0);
  return out;
}

absl::StatusOr<StepReport> RlLoop::RunStep(int64_t step, int64_t end_step) {
  absl::StatusOr<Collected> collected;
  const auto t0 = std::chrono::steady_clock::now();
  if (recipe_.collect_ahead <= 0) {
    collected = Collect(step, version_, /*stop=*/nullptr);
  } else {
    // Collections of earlier steps are not wanted any more (a retried or skipped step).
    for (auto it = in_flight_.begin(); it != in_flight_.end() && it->first < step;) {
      it->second->stop.store(true);
      it->second->thread.join();
      it = in_flight_.erase(it);
    }
    const int64_t last =
        std::max(step, std::min(step + recipe_.collect_ahead, end_step - 1));
    for (int64_t s = step; s <= last; ++s) {
      if (in_flight_.count(s) > 0) continue;
      auto c = std::make_unique<Collection>();
      Collection* raw = c.get();
      const int64_t version = version_;
      // Why a thread: the backends block until the workers deliver; the collection runs
      // while the training thread trains earlier steps. Stop flag: Collection::stop;
      // joined below or in the destructor.
      c->thread = std::thread(
          [this, raw, s, version] { raw->result = Collect(s, version, &raw->stop); });
      in_flight_.emplace(s, std::move(c));
    }
    auto node = in_flight_.extract(step);
    node.mapped()->thread.join();
    collected = std::move(node.mapped()->result);
  }
  const double wait_seconds = Seconds(t0);
  DUET_RETURN_IF_ERROR(collected.status());
  return Train(step, *std::move(collected), wait_seconds);
}

absl::StatusOr<StepReport> RlLoop::Train(int64_t step, Collected collected,
                                         double wait_seconds) {
  StepReport report;
  report.step = step;
  report.rollout_seconds = collected.rollout_seconds;
  report.score_seconds = collected.score_seconds;
  report.collect_wait_seconds = wait_seconds;
  // A sample from a version the learner has not reached is a bug or a lie: refuse the
  // step.
  for (const Group& g : collected.groups) {
    for (const Sample& s : g.samples) {
      if (s.policy_version > version_) {
        return absl::FailedPreconditionError(
            absl::StrCat("a sample from policy version ", s.policy_version,
                         " is newer than the policy (version ", version_, ")"));
      }
    }
  }
  // Staleness: a group with a sample older than the bound is dropped whole (its
  // advantages are relative to the group).
  std::vector<Group> groups;
  int64_t dropped[2] = {0, 0};  // generation, understanding
  for (Group& g : collected.groups) {
    const bool stale = std::any_of(
        g.samples.begin(), g.samples.end(),
        [&](const Sample& s) { return s.policy_version < version_ - recipe_.max_lag; });
    if (stale) {
      dropped[g.task == Task::kGeneration ? 0 : 1] +=
          static_cast<int64_t>(g.samples.size());
    } else {
      groups.push_back(std::move(g));
    }
  }
  double gen_sum = 0, und_sum = 0;
  int64_t gen_n = 0, und_n = 0;
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) {
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
  report.generation_stats.samples_dropped_stale = dropped[0];
  report.understanding_stats.samples_dropped_stale = dropped[1];
  report.samples_dropped_stale = dropped[0] + dropped[1];
  for (const Group& g : groups) {
    report.trained.push_back(
        {g.task, g.input_index, g.item_id, static_cast<int64_t>(g.samples.size())});
  }
  for (const Group& g : groups) {
    for (const Sample& s : g.samples) {
      report.max_sample_lag =
          std::max(report.max_sample_lag, version_ - s.policy_version);
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  // The consistency check compares the behaviour log-probs with the current weights' own:
  // meaningful only for samples drawn at the current version (all of them in synchronous
  // mode with sync_every 1); older ones are skipped.
  std::vector<Group> current;
  for (const Group& g : groups) {
    Group c;
    c.task = g.task;
    c.input = g.input;
    for (const Sample& s : g.samples) {
      if (s.policy_version == version_) c.samples.push_back(s);
    }
    report.logprob_samples_checked += static_cast<int64_t>(c.samples.size());
    if (!c.samples.empty()) current.push_back(std::move(c));
  }
  report.logprob_samples_checked =
      std::min(report.logprob_samples_checked, recipe_.consistency_samples);
  DUET_ASSIGN_OR_RETURN(
      report.logprob_max_diff,
      updater_->MaxLogprobDifference(current, recipe_.consistency_samples));
  DUET_ASSIGN_OR_RETURN(report.update,
                        updater_->Update(groups, version_, recipe_.max_lag));
  ++version_;
  report.policy_version = version_;
  report.update_seconds = Seconds(t0);
  return report;
}

}  // namespace duet
