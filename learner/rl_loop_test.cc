#include "learner/rl_loop.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/model/test_models.h"
#include "learner/policy_update.h"

namespace duet {
namespace {

using Rows = std::vector<std::vector<int64_t>>;

// Samples with valid tokens (image codes for generation, text ids + <eos> for
// understanding) and the policy's own teacher-forced log-probs, so the loop's
// consistency check sees ~0. Records every request. Thread-safe (the asynchronous loop
// calls it from its collection threads); set the public knobs before the loop runs.
class FakeRollout : public RolloutBackend {
 public:
  FakeRollout(const Transformer* model, TokenLayout layout)
      : model_(model), layout_(layout) {}

  absl::StatusOr<std::vector<Group>> Sample(const RolloutRequest& request) override {
    if (before_sample) before_sample(request);  // may block (outside the lock)
    absl::MutexLock lock(&mu);
    requests.push_back(request);
    if (!error.ok()) return error;
    if (error_for && !error_for(request).ok()) return error_for(request);
    std::vector<Group> groups;
    for (size_t i = 0; i < request.inputs.size(); ++i) {
      Group g;
      g.task = request.task;
      g.input = request.inputs[i];
      for (int64_t j = 0; j < request.k; ++j) {
        std::mt19937_64 rng(request.seed * 1315423911ULL +
                            (request.input_offset + i) * 131 + j);
        duet::Sample s;
        if (request.task == Task::kGeneration) {
          const int64_t codes = layout_.image_end - layout_.image_begin;
          for (int64_t t = 0; t < layout_.image_tokens; ++t)
            s.output.push_back(layout_.image_begin + rng() % codes);
        } else {
          const int64_t words = layout_.text_end - layout_.text_begin;
          const int64_t len = 1 + rng() % layout_.max_caption_tokens;
          for (int64_t t = 0; t < len; ++t)
            s.output.push_back(layout_.text_begin + rng() % words);
          s.output.push_back(layout_.eos);
        }
        s.policy_version =
            stamp_fn ? stamp_fn(request) : stamp.value_or(request.policy_version);
        g.samples.push_back(std::move(s));
      }
      groups.push_back(std::move(g));
    }
    FillLogprobs(groups);
    if (corrupt) corrupt(groups);
    produced.push_back(groups);
    return groups;
  }

  // Copies of the records, for the test's checks once the loop is done.
  std::vector<RolloutRequest> Requests() const {
    absl::MutexLock lock(&mu);
    return requests;
  }
  std::vector<std::vector<Group>> Produced() const {
    absl::MutexLock lock(&mu);
    return produced;
  }

  mutable absl::Mutex mu;  // guards the records below against the collection threads
  std::vector<RolloutRequest> requests ABSL_GUARDED_BY(mu);
  std::vector<std::vector<Group>> produced ABSL_GUARDED_BY(mu);  // per call
  std::optional<int64_t> stamp;  // stamp samples with this version instead
  std::function<int64_t(const RolloutRequest&)> stamp_fn;  // or with this (first)
  absl::Status error;  // returned instead of samples when not OK
  std::function<absl::Status(const RolloutRequest&)> error_for;  // per request
  std::function<void(std::vector<Group>&)> corrupt;  // edits the samples before returning
  std::function<void(const RolloutRequest&)> before_sample;  // called first, unlocked

 private:
  void FillLogprobs(std::vector<Group>& groups) const {
    std::vector<TrainingRow> rows;
    for (const Group& g : groups) {
      for (const auto& s : g.samples)
        rows.push_back(MakeTrainingRow(layout_, g.task, g.input, s.output));
    }
    if (rows.empty()) return;
    torch::NoGradGuard no_grad;
    torch::Tensor lp = TargetLogprobs(*model_, rows, layout_.pad).first.contiguous();
    auto a = lp.accessor<float, 2>();
    size_t r = 0;
    for (Group& g : groups) {
      for (auto& s : g.samples) {
        // Entry j - 1 is the log-prob of token j.
        for (int64_t j = rows[r].target_begin; j < rows[r].target_end; ++j) {
          s.policy_logprobs.push_back(a[r][j - 1]);
        }
        ++r;
      }
    }
  }

  const Transformer* model_;
  TokenLayout layout_;
};

// Rewards that vary within a group (so GRPO has advantages); records every call.
class FakeScorer : public ScoreBackend {
 public:
  static double RewardOf(const RewardQuery& q) {
    return static_cast<double>(q.output[0] % 5) +
           (q.task == Task::kGeneration ? 0.0 : 0.25);
  }

  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries,
                                            int64_t policy_version) override {
    absl::MutexLock lock(&mu);
    calls.push_back({queries, policy_version});
    if (!error.ok()) return error;
    std::vector<double> rewards;
    for (const auto& q : queries) rewards.push_back(RewardOf(q));
    if (count_delta < 0) rewards.resize(rewards.size() + count_delta);
    for (int i = 0; i < count_delta; ++i) rewards.push_back(0.0);
    return rewards;
  }

  struct Call {
    std::vector<RewardQuery> queries;
    int64_t policy_version;
  };
  // A copy of the calls, for the test's checks once the loop is done.
  std::vector<Call> Calls() const {
    absl::MutexLock lock(&mu);
    return calls;
  }

  mutable absl::Mutex mu;  // guards `calls` against the collection threads
  std::vector<Call> calls ABSL_GUARDED_BY(mu);
  int count_delta = 0;  // return this many rewards more (or fewer) than queries
  absl::Status error;
};

Rows Prompts() {
  return {{8, 9}, {10, 11, 12}, {13}, {14, 15, 16, 17}, {18, 19, 20, 21, 22}};
}
Rows Images() {
  return {{32, 33, 34, 35}, {36, 37, 38, 39}, {40, 41, 42, 43}, {44, 45, 46, 47}};
}

RlRecipe TestRecipe() {
  RlRecipe r;
  r.generation_inputs = 3;
  r.understanding_inputs = 2;
  r.k = 4;
  r.image_sampling.temperature = 0.9;
  r.caption_sampling.temperature = 0.7;
  r.caption_sampling.top_k = 5;
  r.cfg_scale = 1.5;
  r.seed = 7;
  r.consistency_samples = 1000;  // check every sample
  return r;
}

RlOptimizerOptions TestOptimizer() {
  RlOptimizerOptions o;
  o.lr = 1e-2;
  o.grpo.kl_coef = 0;  // no reference model
  return o;
}

// One loop with its own model and fake backends. Not movable: the loop and the updater
// hold pointers to the members. The fake rollout computes its log-probs with the policy
// itself, or (asynchronous tests, where it runs while the policy trains) with a frozen
// copy of the initial weights, like a worker holding its own weights.
struct Harness {
  explicit Harness(RlRecipe recipe, int64_t start_version = 0, Rows prompts = Prompts(),
                   Rows images = Images())
      : layout(testing::TinyTestLayout()),
        policy(
            Transformer::Create(testing::TinyTestConfig(layout.vocab_size()), 7).value()),
        behaviour(
            Transformer::Create(testing::TinyTestConfig(layout.vocab_size()), 7).value()),
        updater(&policy, nullptr, layout, TestOptimizer()),
        rollout(recipe.collect_ahead > 0 ? &behaviour : &policy, layout),
        loop(&updater, &rollout, &scorer, std::move(prompts), std::move(images), recipe,
             start_version) {}
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  TokenLayout layout;
  Transformer policy;
  Transformer behaviour;
  PolicyUpdater updater;
  FakeRollout rollout;
  FakeScorer scorer;
  RlLoop loop;
};

bool Contains(const Rows& pool, const std::vector<int64_t>& row) {
  return std::find(pool.begin(), pool.end(), row) != pool.end();
}

bool SameWeights(const TensorMap& a, const TensorMap& b) {
  for (const auto& [name, t] : a) {
    if (!torch::equal(t, b.at(name))) return false;
  }
  return true;
}

void ExpectSameRequest(const RolloutRequest& a, const RolloutRequest& b) {
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.sampling.temperature, b.sampling.temperature);
  EXPECT_EQ(a.sampling.top_k, b.sampling.top_k);
  EXPECT_EQ(a.sampling.top_p, b.sampling.top_p);
  EXPECT_EQ(a.cfg_scale, b.cfg_scale);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.input_offset, b.input_offset);
  EXPECT_EQ(a.policy_version, b.policy_version);
}

TEST(DirectionStatsTest, CountsAndSpreadOfOneDirection) {
  auto sample = [](std::vector<int64_t> out, double reward) {
    Sample s;
    s.output = std::move(out);
    s.reward = reward;
    return s;
  };
  std::vector<Group> groups(3);
  groups[0].task = Task::kGeneration;
  groups[0].samples = {sample({1, 2, 3}, 1.0), sample({4, 5, 6}, 3.0)};
  groups[1].task = Task::kGeneration;
  groups[1].samples = {sample({1, 2, 3}, 2.0), sample({1, 2, 3}, 2.0)};  // zero variance
  groups[2].task = Task::kUnderstanding;
  groups[2].samples = {sample({7}, -1.0), sample({8, 9}, -1.0)};
  const DirectionStats gen = ComputeDirectionStats(groups, Task::kGeneration);
  EXPECT_EQ(gen.samples, 4);
  EXPECT_EQ(gen.groups, 2);
  EXPECT_EQ(gen.tokens, 12);
  EXPECT_NEAR(gen.reward_std, std::sqrt(0.5), 1e-9);         // rewards 1, 3, 2, 2
  EXPECT_NEAR(gen.reward_group_std, (1.0 + 0.0) / 2, 1e-9);  // std 1 and 0
  EXPECT_DOUBLE_EQ(gen.zero_variance_groups_ratio, 0.5);
  EXPECT_GT(gen.advantage_std, 0.5);  // +-1 in the first group, 0 in the second
  const DirectionStats und = ComputeDirectionStats(groups, Task::kUnderstanding);
  EXPECT_EQ(und.tokens, 3);
  EXPECT_DOUBLE_EQ(und.zero_variance_groups_ratio, 1.0);
  EXPECT_DOUBLE_EQ(und.advantage_std, 0.0);
}

TEST(RlLoopTest, RequestsFollowTheRecipe) {
  const RlRecipe recipe = TestRecipe();
  Harness h(recipe);
  EXPECT_EQ(h.loop.version(), 0);
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();

  ASSERT_EQ(h.rollout.Requests().size(), 2u);
  const RolloutRequest gen = h.rollout.Requests()[0];
  EXPECT_EQ(gen.task, Task::kGeneration);
  ASSERT_EQ(gen.inputs.size(), 3u);
  for (const auto& in : gen.inputs) EXPECT_TRUE(Contains(Prompts(), in));
  EXPECT_EQ(gen.k, 4);
  EXPECT_EQ(gen.sampling.temperature, 0.9);
  EXPECT_EQ(gen.cfg_scale, 1.5);
  EXPECT_EQ(gen.input_offset, 0);
  EXPECT_EQ(gen.policy_version, 0);

  const RolloutRequest und = h.rollout.Requests()[1];
  EXPECT_EQ(und.task, Task::kUnderstanding);
  ASSERT_EQ(und.inputs.size(), 2u);
  for (const auto& in : und.inputs) EXPECT_TRUE(Contains(Images(), in));
  EXPECT_EQ(und.k, 4);
  EXPECT_EQ(und.sampling.temperature, 0.7);
  EXPECT_EQ(und.sampling.top_k, 5);
  EXPECT_FALSE(und.cfg_scale.has_value());  // guidance is for images only
  EXPECT_EQ(und.policy_version, 0);
  EXPECT_NE(gen.seed, und.seed);

  // Every (input, sample) pair goes to the scorer once, in order, at the same version.
  ASSERT_EQ(h.scorer.Calls().size(), 1u);
  EXPECT_EQ(h.scorer.Calls()[0].policy_version, 0);
  const auto queries = h.scorer.Calls()[0].queries;
  ASSERT_EQ(queries.size(), 20u);
  size_t q = 0;
  double gen_sum = 0, und_sum = 0;
  for (const auto& groups : h.rollout.Produced()) {
    for (const Group& g : groups) {
      for (const auto& s : g.samples) {
        ASSERT_LT(q, queries.size());
        EXPECT_EQ(queries[q].task, g.task);
        EXPECT_EQ(queries[q].input, g.input);
        EXPECT_EQ(queries[q].output, s.output);
        (g.task == Task::kGeneration ? gen_sum : und_sum) +=
            FakeScorer::RewardOf(queries[q]);
        ++q;
      }
    }
  }
  EXPECT_EQ(q, queries.size());

  EXPECT_EQ(report->step, 0);
  EXPECT_EQ(report->policy_version, 1);
  EXPECT_EQ(h.loop.version(), 1);
  EXPECT_EQ(report->samples, 20);
  EXPECT_NEAR(report->generation_reward, gen_sum / 12, 1e-12);
  EXPECT_NEAR(report->understanding_reward, und_sum / 8, 1e-12);
  EXPECT_LT(report->logprob_max_diff, 1e-4);
  EXPECT_EQ(report->update.samples, 20);
}

TEST(RlLoopTest, ASuccessfulStepUpdatesTheWeights) {
  Harness h(TestRecipe());
  const TensorMap before = h.policy.StateDict();
  ASSERT_TRUE(h.loop.RunStep(0).ok());
  EXPECT_FALSE(SameWeights(before, h.policy.StateDict()));
  EXPECT_EQ(h.updater.optimizer().step(), 1);
}

TEST(RlLoopTest, GenerationOnlyRecipeNeedsNoImages) {
  RlRecipe recipe = TestRecipe();
  recipe.understanding_inputs = 0;
  Harness h(recipe, /*start_version=*/0, Prompts(), /*images=*/{});
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(h.rollout.Requests().size(), 1u);
  EXPECT_EQ(h.rollout.Requests()[0].task, Task::kGeneration);
  EXPECT_EQ(report->samples, 12);
  EXPECT_EQ(report->understanding_reward, 0.0);
}

TEST(RlLoopTest, UnderstandingOnlyRecipeRequestsOnlyCaptions) {
  RlRecipe recipe = TestRecipe();
  recipe.generation_inputs = 0;
  Harness h(recipe, /*start_version=*/0, /*prompts=*/{}, Images());
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(h.rollout.Requests().size(), 1u);
  EXPECT_EQ(h.rollout.Requests()[0].task, Task::kUnderstanding);
  EXPECT_EQ(report->samples, 8);
}

TEST(RlLoopTest, AnEmptyPoolForATrainedDirectionIsFailedPrecondition) {
  Harness h(TestRecipe(), /*start_version=*/0, Prompts(), /*images=*/{});
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition)
      << report.status();
  EXPECT_EQ(h.loop.version(), 0);
}

TEST(RlLoopTest, VersionIncrementsByOnePerStepAndRequestsCarryIt) {
  Harness h(TestRecipe(), /*start_version=*/5);
  EXPECT_EQ(h.loop.version(), 5);
  for (int64_t step = 0; step < 3; ++step) {
    const int64_t v = h.loop.version();
    const size_t first_request = h.rollout.Requests().size();
    absl::StatusOr<StepReport> report = h.loop.RunStep(step);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->step, step);
    EXPECT_EQ(report->policy_version, v + 1);
    EXPECT_EQ(h.loop.version(), v + 1);
    ASSERT_EQ(h.rollout.Requests().size(), first_request + 2);
    for (size_t i = first_request; i < h.rollout.Requests().size(); ++i) {
      EXPECT_EQ(h.rollout.Requests()[i].policy_version, v) << "step " << step;
    }
    EXPECT_EQ(h.scorer.Calls().back().policy_version, v);
  }
  EXPECT_EQ(h.loop.version(), 8);
}

TEST(RlLoopTest, FutureSamplesFailTheStepAndChangeNothing) {
  Harness h(TestRecipe(), /*start_version=*/3);
  const TensorMap before = h.policy.StateDict();
  h.rollout.stamp = 4;
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition)
      << report.status();
  EXPECT_EQ(h.loop.version(), 3);
  EXPECT_TRUE(SameWeights(before, h.policy.StateDict()));
  EXPECT_EQ(h.updater.optimizer().step(), 0);
  h.rollout.stamp.reset();
  report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->policy_version, 4);
}

// Groups older than the lag bound are dropped and counted per direction, never trained
// on.
TEST(RlLoopTest, StaleGroupsAreDroppedAndCountedNeverTrainedOn) {
  for (int64_t stamp : {2, 0}) {
    SCOPED_TRACE(stamp);
    Harness h(TestRecipe(), /*start_version=*/3);  // max_lag 0
    const TensorMap before = h.policy.StateDict();
    h.rollout.stamp = stamp;
    absl::StatusOr<StepReport> report = h.loop.RunStep(0);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->samples_dropped_stale, 20);
    EXPECT_EQ(report->generation_stats.samples_dropped_stale, 12);
    EXPECT_EQ(report->understanding_stats.samples_dropped_stale, 8);
    EXPECT_EQ(report->samples, 0);
    EXPECT_EQ(report->update.samples, 0);
    EXPECT_EQ(report->max_sample_lag, 0);  // of the samples trained on: none
    EXPECT_EQ(report->logprob_samples_checked, 0);
    // Nothing trained: no optimizer step, the weights as they were; the version advances.
    EXPECT_TRUE(SameWeights(before, h.policy.StateDict()));
    EXPECT_EQ(h.updater.optimizer().step(), 0);
    EXPECT_EQ(report->policy_version, 4);
  }
}

TEST(RlLoopTest, OnlyTheStaleDirectionIsDropped) {
  RlRecipe recipe = TestRecipe();
  recipe.max_lag = 1;
  Harness h(recipe, /*start_version=*/3);
  h.rollout.stamp_fn = [](const RolloutRequest& r) {
    return r.task == Task::kGeneration ? r.policy_version - 2 : r.policy_version;
  };
  const TensorMap before = h.policy.StateDict();
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->generation_stats.samples_dropped_stale, 12);
  EXPECT_EQ(report->understanding_stats.samples_dropped_stale, 0);
  EXPECT_EQ(report->samples_dropped_stale, 12);
  EXPECT_EQ(report->generation_stats.samples, 0);
  EXPECT_EQ(report->understanding_stats.samples, 8);
  EXPECT_EQ(report->samples, 8);
  EXPECT_EQ(report->update.samples, 8);
  EXPECT_EQ(report->generation_reward, 0.0);
  EXPECT_FALSE(SameWeights(before, h.policy.StateDict()));
  EXPECT_EQ(h.updater.optimizer().step(), 1);
}

TEST(RlLoopTest, SamplesWithinMaxLagAreAccepted) {
  RlRecipe recipe = TestRecipe();
  recipe.max_lag = 1;
  Harness h(recipe, /*start_version=*/3);
  h.rollout.stamp = 2;  // one behind: allowed
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->policy_version, 4);
  EXPECT_EQ(report->samples_dropped_stale, 0);
  EXPECT_EQ(report->max_sample_lag, 1);
  EXPECT_EQ(report->update.samples, 20);
  // Now two behind: dropped.
  report = h.loop.RunStep(1);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples_dropped_stale, 20);
  EXPECT_EQ(report->update.samples, 0);
  EXPECT_EQ(h.updater.optimizer().step(), 1);
}

// The consistency check compares log-probs of the same weights only: samples of an older
// (accepted) version are skipped, whatever their log-probs.
TEST(RlLoopTest, ConsistencyCheckSkipsSamplesOfOlderVersions) {
  RlRecipe recipe = TestRecipe();
  recipe.max_lag = 1;
  for (bool generation_is_old : {true, false}) {
    SCOPED_TRACE(generation_is_old);
    Harness h(recipe, /*start_version=*/3);
    h.rollout.stamp_fn = [generation_is_old](const RolloutRequest& r) {
      return r.task == Task::kGeneration && generation_is_old ? r.policy_version - 1
                                                              : r.policy_version;
    };
    // Behaviour log-probs of the generation samples far from the policy's.
    h.rollout.corrupt = [](std::vector<Group>& groups) {
      for (Group& g : groups) {
        if (g.task != Task::kGeneration) continue;
        for (Sample& s : g.samples) {
          for (float& lp : s.policy_logprobs) lp -= 1.0f;
        }
      }
    };
    absl::StatusOr<StepReport> report = h.loop.RunStep(0);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->update.samples, 20);  // both versions trained on
    if (generation_is_old) {
      EXPECT_EQ(report->logprob_samples_checked, 8);  // the understanding samples
      EXPECT_LT(report->logprob_max_diff, 1e-4);
      EXPECT_EQ(report->max_sample_lag, 1);
    } else {  // the same samples at the current version: the check sees the difference
      EXPECT_EQ(report->logprob_samples_checked, 20);
      EXPECT_GT(report->logprob_max_diff, 0.5);
      EXPECT_EQ(report->max_sample_lag, 0);
    }
  }
}

TEST(RlLoopTest, WrongNumberOfRewardsIsAnError) {
  for (int delta : {-1, 1}) {
    Harness h(TestRecipe());
    const TensorMap before = h.policy.StateDict();
    h.scorer.count_delta = delta;
    absl::StatusOr<StepReport> report = h.loop.RunStep(0);
    EXPECT_FALSE(report.ok()) << "delta " << delta;
    EXPECT_EQ(h.loop.version(), 0);
    EXPECT_TRUE(SameWeights(before, h.policy.StateDict()));
  }
}

TEST(RlLoopTest, BackendErrorsPassThroughWithTheirCode) {
  Harness h(TestRecipe());
  h.rollout.error = absl::UnavailableError("no rollout workers");
  EXPECT_EQ(h.loop.RunStep(0).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(h.loop.version(), 0);
  h.rollout.error = absl::OkStatus();
  h.scorer.error = absl::DeadlineExceededError("scorers too slow");
  EXPECT_EQ(h.loop.RunStep(0).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(h.loop.version(), 0);
  h.scorer.error = absl::OkStatus();
  EXPECT_TRUE(h.loop.RunStep(0).ok());
  EXPECT_EQ(h.loop.version(), 1);
}

// A backend (a buggy or hostile worker behind RemoteRollout) can return samples the model
// cannot score: the step must fail with a Status, not throw out of RunStep (the project's
// APIs do not throw; LibTorch errors are caught one layer in).
TEST(RlLoopTest, UnscorableSamplesFailTheStepWithoutThrowing) {
  const std::vector<std::pair<const char*, std::function<void(std::vector<Group>&)>>>
      cases = {
          {"token id outside the vocabulary",
           [](std::vector<Group>& groups) { groups[0].samples[0].output[0] = 999; }},
          {"sequence longer than max_position_embeddings",
           [](std::vector<Group>& groups) {
             Sample& s = groups[0].samples[0];
             s.output.assign(40, s.output[0]);  // a valid image code, 40 times
             s.policy_logprobs.assign(40, -1.0f);
           }},
      };
  for (const auto& [what, corrupt] : cases) {
    SCOPED_TRACE(what);
    Harness h(TestRecipe());
    h.rollout.corrupt = corrupt;
    absl::StatusOr<StepReport> report = absl::UnknownError("not run");
    EXPECT_NO_THROW(report = h.loop.RunStep(0));
    EXPECT_FALSE(report.ok());
    EXPECT_EQ(h.loop.version(), 0);
  }
}

TEST(RlLoopTest, SameSeedSameRequests) {
  Harness a(TestRecipe()), b(TestRecipe());
  for (int64_t step = 0; step < 3; ++step) {
    ASSERT_TRUE(a.loop.RunStep(step).ok());
    ASSERT_TRUE(b.loop.RunStep(step).ok());
  }
  ASSERT_EQ(a.rollout.Requests().size(), 6u);
  ASSERT_EQ(b.rollout.Requests().size(), 6u);
  for (size_t i = 0; i < a.rollout.Requests().size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameRequest(a.rollout.Requests()[i], b.rollout.Requests()[i]);
  }
  // Different steps ask for different samples.
  EXPECT_NE(a.rollout.Requests()[0].seed, a.rollout.Requests()[2].seed);

  // A resumed loop sees the same data at the same step.
  Harness resumed(TestRecipe(), /*start_version=*/2);
  ASSERT_TRUE(resumed.loop.RunStep(2).ok());
  ASSERT_EQ(resumed.rollout.Requests().size(), 2u);
  ExpectSameRequest(resumed.rollout.Requests()[0], a.rollout.Requests()[4]);
  ExpectSameRequest(resumed.rollout.Requests()[1], a.rollout.Requests()[5]);
}

TEST(RlLoopTest, DifferentSeedDifferentRequests) {
  RlRecipe other = TestRecipe();
  other.seed = 8;
  Harness a(TestRecipe()), b(other);
  Rows a_inputs, b_inputs;
  for (int64_t step = 0; step < 3; ++step) {
    ASSERT_TRUE(a.loop.RunStep(step).ok());
    ASSERT_TRUE(b.loop.RunStep(step).ok());
  }
  for (size_t i = 0; i < a.rollout.Requests().size(); ++i) {
    const RolloutRequest ra = a.rollout.Requests()[i], rb = b.rollout.Requests()[i];
    EXPECT_NE(ra.seed, rb.seed) << i;
    for (const auto& in : ra.inputs) a_inputs.push_back(in);
    for (const auto& in : rb.inputs) b_inputs.push_back(in);
  }
  EXPECT_NE(a_inputs, b_inputs);
}

TEST(RlLoopTest, EveryPromptIsVisitedOncePerEpoch) {
  // 5 prompts, 5 per step (generation only): each step is one epoch, a permutation.
  RlRecipe recipe = TestRecipe();
  recipe.generation_inputs = 5;
  recipe.understanding_inputs = 0;
  recipe.k = 2;
  Harness h(recipe);
  for (int64_t step = 0; step < 2; ++step) {
    ASSERT_TRUE(h.loop.RunStep(step).ok());
    Rows seen = h.rollout.Requests().back().inputs;
    Rows all = Prompts();
    std::sort(seen.begin(), seen.end());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(seen, all) << "step " << step;
  }
}

// The report names each group it trained on by its input's index in the data, for the
// learner's ledger; a dropped (stale) group is not among them.
TEST(RlLoopTest, TheReportNamesTheGroupsTrainedOnByTheirInputIndex) {
  Harness h(TestRecipe());
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::vector<RolloutRequest> requests = h.rollout.Requests();
  ASSERT_EQ(requests.size(), 2u);
  ASSERT_EQ(report->trained.size(), 5u);  // 3 prompts + 2 images
  for (size_t i = 0; i < report->trained.size(); ++i) {
    const TrainedGroup& g = report->trained[i];
    const bool gen = i < 3;
    EXPECT_EQ(g.task, gen ? Task::kGeneration : Task::kUnderstanding);
    EXPECT_EQ(g.samples, 4);
    const Rows pool = gen ? Prompts() : Images();
    ASSERT_GE(g.input, 0);
    ASSERT_LT(g.input, static_cast<int64_t>(pool.size()));
    EXPECT_EQ(pool[g.input], requests[gen ? 0 : 1].inputs[gen ? i : i - 3]) << i;
  }
  Harness stale(TestRecipe(), /*start_version=*/3);
  stale.rollout.stamp = 0;
  report = stale.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->trained.empty());
}

// ---- Asynchronous mode
// --------------------------------------------------------------------

RlRecipe AsyncRecipe(int64_t ahead) {
  RlRecipe r = TestRecipe();
  r.collect_ahead = ahead;
  r.max_lag = ahead;
  return r;
}

// The step a request belongs to (RlLoop seeds requests by step and direction).
int64_t StepOf(const RlRecipe& recipe, const RolloutRequest& r) {
  return static_cast<int64_t>(
      (r.seed - recipe.seed * 1000003ULL - (r.task == Task::kGeneration ? 0 : 1)) / 2);
}

TEST(RlLoopAsyncTest, CollectsAheadAtTheVersionOfTheMoment) {
  const RlRecipe recipe = AsyncRecipe(2);
  Harness h(recipe);
  constexpr int64_t kSteps = 5;
  std::vector<std::vector<int64_t>> in_flight;
  for (int64_t step = 0; step < kSteps; ++step) {
    absl::StatusOr<StepReport> report = h.loop.RunStep(step, /*end_step=*/kSteps);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->policy_version, step + 1);
    // Step s was requested before step s - 2 trained: at version max(0, s - 2).
    EXPECT_EQ(report->max_sample_lag, std::min<int64_t>(step, 2)) << step;
    EXPECT_EQ(report->samples_dropped_stale, 0);
    EXPECT_EQ(report->update.samples, 20);
    in_flight.push_back(h.loop.CollectionsInFlight());
  }
  // Never more than collect_ahead steps ahead, never past end_step.
  const std::vector<std::vector<int64_t>> expected = {{1, 2}, {2, 3}, {3, 4}, {4}, {}};
  EXPECT_EQ(in_flight, expected);
  ASSERT_EQ(h.rollout.Requests().size(), 2u * kSteps);  // each step collected once
  for (const RolloutRequest& r : h.rollout.Requests()) {
    const int64_t step = StepOf(recipe, r);
    EXPECT_EQ(r.policy_version, std::max<int64_t>(0, step - 2)) << "step " << step;
  }
}

// The point of the mode: step s trains while the rollout of step s + 1 is still running.
TEST(RlLoopAsyncTest, TrainsWhileTheNextStepIsStillRollingOut) {
  const RlRecipe recipe = AsyncRecipe(1);
  Harness h(recipe);
  absl::Notification release;
  std::atomic<bool> step1_started{false};
  std::atomic<bool> step1_timed_out{false};
  h.rollout.before_sample = [&](const RolloutRequest& r) {
    if (StepOf(recipe, r) != 1 || r.task != Task::kGeneration) return;
    step1_started = true;
    // Bounded, so that a loop that waits for step 1 before training step 0 fails the
    // test instead of hanging it.
    if (!release.WaitForNotificationWithTimeout(absl::Seconds(20)))
      step1_timed_out = true;
  };
  absl::StatusOr<StepReport> report = h.loop.RunStep(0, /*end_step=*/2);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(step1_timed_out.load()) << "step 0 waited for step 1's rollout";
  EXPECT_EQ(h.loop.version(), 1);
  EXPECT_EQ(h.loop.CollectionsInFlight(), std::vector<int64_t>{1});
  release.Notify();
  report = h.loop.RunStep(1, /*end_step=*/2);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(step1_started.load());
  EXPECT_EQ(report->max_sample_lag, 1);  // requested at version 0, trained at 1
  EXPECT_EQ(h.loop.version(), 2);
}

// Asynchronous mode changes when a step's data is collected, not what is collected.
TEST(RlLoopAsyncTest, SameDataAsSynchronousMode) {
  const RlRecipe async = AsyncRecipe(2);
  Harness a(TestRecipe()), b(async);
  for (int64_t step = 0; step < 4; ++step) {
    ASSERT_TRUE(a.loop.RunStep(step).ok());
    ASSERT_TRUE(b.loop.RunStep(step, /*end_step=*/4).ok());
  }
  ASSERT_EQ(a.rollout.Requests().size(), 8u);
  ASSERT_EQ(b.rollout.Requests().size(), 8u);
  std::map<std::pair<int64_t, Task>, RolloutRequest> by_step;
  for (const RolloutRequest& r : b.rollout.Requests())
    by_step[{StepOf(async, r), r.task}] = r;
  for (const RolloutRequest& r : a.rollout.Requests()) {
    const int64_t step = StepOf(TestRecipe(), r);
    SCOPED_TRACE(step);
    RolloutRequest other = by_step.at({step, r.task});
    EXPECT_EQ(other.policy_version, std::max<int64_t>(0, step - 2));
    other.policy_version = r.policy_version;  // the one thing that differs
    ExpectSameRequest(other, r);
  }
}

// Given the versions its samples come from (here: the version requested), an
// asynchronous run is reproducible: the concurrency does not reorder the data.
TEST(RlLoopAsyncTest, RunsWithTheSameSeedEndOnTheSameWeights) {
  Harness a(AsyncRecipe(2)), b(AsyncRecipe(2)), sync(TestRecipe());
  for (int64_t step = 0; step < 4; ++step) {
    ASSERT_TRUE(a.loop.RunStep(step, /*end_step=*/4).ok());
    ASSERT_TRUE(b.loop.RunStep(step, /*end_step=*/4).ok());
    ASSERT_TRUE(sync.loop.RunStep(step).ok());
  }
  EXPECT_TRUE(SameWeights(a.policy.StateDict(), b.policy.StateDict()));
  // Not the synchronous run's: its samples come from the current weights.
  EXPECT_FALSE(SameWeights(a.policy.StateDict(), sync.policy.StateDict()));
}

TEST(RlLoopAsyncTest, StaleSamplesOfACollectionAheadAreDropped) {
  // A backend whose samples come from one version before the request's (a worker whose
  // weights lag the learner's): with one step collected ahead they lag by 2 from step 2
  // on.
  Harness h(AsyncRecipe(1));
  h.rollout.stamp_fn = [](const RolloutRequest& r) {
    return std::max<int64_t>(0, r.policy_version - 1);
  };
  absl::StatusOr<StepReport> report = h.loop.RunStep(0, /*end_step=*/3);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples_dropped_stale, 0);
  report = h.loop.RunStep(1, /*end_step=*/3);  // requested at 0, stamped 0, trained at 1
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples_dropped_stale, 0);
  EXPECT_EQ(report->max_sample_lag, 1);
  report = h.loop.RunStep(2, /*end_step=*/3);  // requested at 1, stamped 0, trained at 2
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples_dropped_stale, 20);
  EXPECT_EQ(report->update.samples, 0);
  EXPECT_EQ(h.loop.version(), 3);
  EXPECT_EQ(h.updater.optimizer().step(), 2);
}

// A collection that fails fails its own step, when that step trains; a retry collects the
// step again.
TEST(RlLoopAsyncTest, AFailedCollectionFailsItsStepAndIsCollectedAgainOnRetry) {
  const RlRecipe recipe = AsyncRecipe(2);
  Harness h(recipe);
  std::atomic<bool> fail{true};
  h.rollout.error_for = [&](const RolloutRequest& r) {
    return StepOf(recipe, r) == 2 && fail.load() ? absl::UnavailableError("worker gone")
                                                 : absl::OkStatus();
  };
  ASSERT_TRUE(h.loop.RunStep(0, /*end_step=*/4).ok());
  ASSERT_TRUE(h.loop.RunStep(1, /*end_step=*/4).ok());
  EXPECT_EQ(h.loop.RunStep(2, /*end_step=*/4).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(h.loop.version(), 2);
  EXPECT_EQ(h.loop.CollectionsInFlight(), std::vector<int64_t>{3});
  fail = false;
  absl::StatusOr<StepReport> report = h.loop.RunStep(2, /*end_step=*/4);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->max_sample_lag, 0);  // collected again at the current version
  ASSERT_TRUE(h.loop.RunStep(3, /*end_step=*/4).ok());
  EXPECT_EQ(h.loop.version(), 4);
}

// Collections still in flight when the loop goes away are abandoned, not waited for
// beyond their backend calls; a resumed loop collects those steps again.
TEST(RlLoopAsyncTest, DestroyingTheLoopAbandonsCollectionsInFlight) {
  const RlRecipe recipe = AsyncRecipe(3);
  auto h = std::make_unique<Harness>(recipe);
  ASSERT_TRUE(h->loop.RunStep(0).ok());
  EXPECT_EQ(h->loop.CollectionsInFlight(), (std::vector<int64_t>{1, 2, 3}));
  h.reset();  // joins them
  Harness resumed(recipe, /*start_version=*/1);
  absl::StatusOr<StepReport> report = resumed.loop.RunStep(1, /*end_step=*/2);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->max_sample_lag, 0);
}

}  // namespace
}  // namespace duet
