#include "learner/rl_loop.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <vector>

#include "learner/policy_update.h"
#include "model/test_models.h"

namespace duet {
namespace {

using Rows = std::vector<std::vector<int64_t>>;

// Samples with valid tokens (image codes for generation, text ids + <eos> for
// understanding) and the policy's own teacher-forced log-probs, so the loop's
// consistency check sees ~0. Records every request.
class FakeRollout : public RolloutBackend {
 public:
  FakeRollout(const Transformer* model, TokenLayout layout)
      : model_(model), layout_(layout) {}

  absl::StatusOr<std::vector<Group>> Sample(const RolloutRequest& request) override {
    requests.push_back(request);
    if (!error.ok()) return error;
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
        s.policy_version = stamp.value_or(request.policy_version);
        g.samples.push_back(std::move(s));
      }
      groups.push_back(std::move(g));
    }
    FillLogprobs(groups);
    if (corrupt) corrupt(groups);
    produced.push_back(groups);
    return groups;
  }

  std::vector<RolloutRequest> requests;
  std::vector<std::vector<Group>> produced;  // per call
  std::optional<int64_t> stamp;              // stamp samples with this version instead
  absl::Status error;                        // returned instead of samples when not OK
  std::function<void(std::vector<Group>&)> corrupt;  // edits the samples before returning

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
  std::vector<Call> calls;
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
// hold pointers to the members.
struct Harness {
  explicit Harness(RlRecipe recipe, int64_t start_version = 0, Rows prompts = Prompts(),
                   Rows images = Images())
      : layout(testing::TinyTestLayout()),
        policy(
            Transformer::Create(testing::TinyTestConfig(layout.vocab_size()), 7).value()),
        updater(&policy, nullptr, layout, TestOptimizer()),
        rollout(&policy, layout),
        loop(&updater, &rollout, &scorer, std::move(prompts), std::move(images), recipe,
             start_version) {}
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  TokenLayout layout;
  Transformer policy;
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
  EXPECT_NEAR(gen.reward_std, std::sqrt(0.5), 1e-9);          // rewards 1, 3, 2, 2
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

  ASSERT_EQ(h.rollout.requests.size(), 2u);
  const RolloutRequest& gen = h.rollout.requests[0];
  EXPECT_EQ(gen.task, Task::kGeneration);
  ASSERT_EQ(gen.inputs.size(), 3u);
  for (const auto& in : gen.inputs) EXPECT_TRUE(Contains(Prompts(), in));
  EXPECT_EQ(gen.k, 4);
  EXPECT_EQ(gen.sampling.temperature, 0.9);
  EXPECT_EQ(gen.cfg_scale, 1.5);
  EXPECT_EQ(gen.input_offset, 0);
  EXPECT_EQ(gen.policy_version, 0);

  const RolloutRequest& und = h.rollout.requests[1];
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
  ASSERT_EQ(h.scorer.calls.size(), 1u);
  EXPECT_EQ(h.scorer.calls[0].policy_version, 0);
  const auto& queries = h.scorer.calls[0].queries;
  ASSERT_EQ(queries.size(), 20u);
  size_t q = 0;
  double gen_sum = 0, und_sum = 0;
  for (const auto& groups : h.rollout.produced) {
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
  ASSERT_EQ(h.rollout.requests.size(), 1u);
  EXPECT_EQ(h.rollout.requests[0].task, Task::kGeneration);
  EXPECT_EQ(report->samples, 12);
  EXPECT_EQ(report->understanding_reward, 0.0);
}

TEST(RlLoopTest, UnderstandingOnlyRecipeRequestsOnlyCaptions) {
  RlRecipe recipe = TestRecipe();
  recipe.generation_inputs = 0;
  Harness h(recipe, /*start_version=*/0, /*prompts=*/{}, Images());
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(h.rollout.requests.size(), 1u);
  EXPECT_EQ(h.rollout.requests[0].task, Task::kUnderstanding);
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
    const size_t first_request = h.rollout.requests.size();
    absl::StatusOr<StepReport> report = h.loop.RunStep(step);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->step, step);
    EXPECT_EQ(report->policy_version, v + 1);
    EXPECT_EQ(h.loop.version(), v + 1);
    ASSERT_EQ(h.rollout.requests.size(), first_request + 2);
    for (size_t i = first_request; i < h.rollout.requests.size(); ++i) {
      EXPECT_EQ(h.rollout.requests[i].policy_version, v) << "step " << step;
    }
    EXPECT_EQ(h.scorer.calls.back().policy_version, v);
  }
  EXPECT_EQ(h.loop.version(), 8);
}

TEST(RlLoopTest, StaleOrFutureSamplesFailTheStepAndChangeNothing) {
  Harness h(TestRecipe(), /*start_version=*/3);
  const TensorMap before = h.policy.StateDict();
  for (int64_t stamp : {2, 0, 4}) {
    h.rollout.stamp = stamp;
    absl::StatusOr<StepReport> report = h.loop.RunStep(0);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition)
        << "stamp " << stamp << ": " << report.status();
    EXPECT_EQ(h.loop.version(), 3);
    EXPECT_TRUE(SameWeights(before, h.policy.StateDict())) << "stamp " << stamp;
    EXPECT_EQ(h.updater.optimizer().step(), 0);
  }
  h.rollout.stamp.reset();
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->policy_version, 4);
}

TEST(RlLoopTest, SamplesWithinMaxLagAreAccepted) {
  RlRecipe recipe = TestRecipe();
  recipe.max_lag = 1;
  Harness h(recipe, /*start_version=*/3);
  h.rollout.stamp = 2;  // one behind: allowed
  absl::StatusOr<StepReport> report = h.loop.RunStep(0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->policy_version, 4);
  // Now two behind.
  report = h.loop.RunStep(1);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition)
      << report.status();
  EXPECT_EQ(h.loop.version(), 4);
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
  ASSERT_EQ(a.rollout.requests.size(), 6u);
  ASSERT_EQ(b.rollout.requests.size(), 6u);
  for (size_t i = 0; i < a.rollout.requests.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameRequest(a.rollout.requests[i], b.rollout.requests[i]);
  }
  // Different steps ask for different samples.
  EXPECT_NE(a.rollout.requests[0].seed, a.rollout.requests[2].seed);

  // A resumed loop sees the same data at the same step.
  Harness resumed(TestRecipe(), /*start_version=*/2);
  ASSERT_TRUE(resumed.loop.RunStep(2).ok());
  ASSERT_EQ(resumed.rollout.requests.size(), 2u);
  ExpectSameRequest(resumed.rollout.requests[0], a.rollout.requests[4]);
  ExpectSameRequest(resumed.rollout.requests[1], a.rollout.requests[5]);
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
  for (size_t i = 0; i < a.rollout.requests.size(); ++i) {
    EXPECT_NE(a.rollout.requests[i].seed, b.rollout.requests[i].seed) << i;
    for (const auto& in : a.rollout.requests[i].inputs) a_inputs.push_back(in);
    for (const auto& in : b.rollout.requests[i].inputs) b_inputs.push_back(in);
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
    Rows seen = h.rollout.requests.back().inputs;
    Rows all = Prompts();
    std::sort(seen.begin(), seen.end());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(seen, all) << "step " << step;
  }
}

}  // namespace
}  // namespace duet
