#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/model/test_models.h"
#include "learner/policy_update.h"
#include "rollout/sampler.h"

namespace duet {
namespace {

class PolicyUpdateTest : public ::testing::Test {
 protected:
  PolicyUpdateTest() {
    layout_ = testing::TinyTestLayout();
    const ModelConfig c = testing::TinyTestConfig(layout_.vocab_size());
    policy_ = std::make_unique<Transformer>(*Transformer::Create(c, 5));
    reference_ = std::make_unique<Transformer>(*Transformer::Create(c, 5));
  }

  double SampleLogprob(const Group& g, const Sample& s) {
    torch::InferenceMode guard;
    auto [lp, mask] = TargetLogprobs(
        *policy_, {MakeTrainingRow(layout_, g.task, g.input, s.output)}, 0);
    return (lp * mask).sum().item<double>();
  }

  TokenLayout layout_;
  std::unique_ptr<Transformer> policy_, reference_;
};

TEST_F(PolicyUpdateTest, SamplerLogprobsAgreeWithTheTeacherForcedPass) {
  RolloutRequest req;
  req.task = Task::kGeneration;
  req.inputs = {{8, 9}, {10, 11, 12}};
  req.k = 3;
  req.cfg_scale = 2.0;
  auto groups = SampleGroups(*policy_, layout_, req, /*policy_version=*/0);
  ASSERT_TRUE(groups.ok());
  req.task = Task::kUnderstanding;
  req.inputs = {{32, 33, 34, 35}};
  auto captions = SampleGroups(*policy_, layout_, req, /*policy_version=*/0);
  ASSERT_TRUE(captions.ok());
  groups->insert(groups->end(), captions->begin(), captions->end());
  PolicyUpdater updater(policy_.get(), reference_.get(), layout_, RlOptimizerOptions{});
  auto diff = updater.MaxLogprobDifference(*groups, /*max_samples=*/100);
  ASSERT_TRUE(diff.ok());
  EXPECT_LT(*diff, 1e-4);
}

TEST_F(PolicyUpdateTest, GrpoStepMovesProbabilityTowardsTheBetterSample) {
  RolloutRequest req;
  req.inputs = {{8, 9}};
  req.k = 2;
  auto groups = SampleGroups(*policy_, layout_, req, 0);
  ASSERT_TRUE(groups.ok());
  Group& g = (*groups)[0];
  ASSERT_NE(g.samples[0].output, g.samples[1].output);
  g.samples[0].reward = 1.0;
  g.samples[1].reward = -1.0;
  const double good0 = SampleLogprob(g, g.samples[0]),
               bad0 = SampleLogprob(g, g.samples[1]);
  RlOptimizerOptions o;
  o.lr = 1e-2;
  PolicyUpdater updater(policy_.get(), reference_.get(), layout_, o);
  auto stats = updater.Update(*groups, /*policy_version=*/0);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->samples, 2);
  EXPECT_GT(stats->grad_norm, 0);
  EXPECT_GT(SampleLogprob(g, g.samples[0]), good0);
  EXPECT_LT(SampleLogprob(g, g.samples[1]), bad0);
}

TEST_F(PolicyUpdateTest, SimpoStepWidensThePairMargin) {
  RolloutRequest req;
  req.task = Task::kUnderstanding;
  req.inputs = {{32, 33, 34, 35}, {36, 37, 38, 39}};
  req.k = 4;
  req.sampling.temperature = 1.5;
  auto groups = SampleGroups(*policy_, layout_, req, 0);
  ASSERT_TRUE(groups.ok());
  for (Group& g : *groups) {
    for (size_t i = 0; i < g.samples.size(); ++i)
      g.samples[i].reward = static_cast<double>(i);
  }
  RlOptimizerOptions o;
  o.algorithm = RlAlgorithm::kSimpo;
  o.lr = 1e-2;
  PolicyUpdater updater(policy_.get(), nullptr, layout_, o);
  auto first = updater.Update(*groups, /*policy_version=*/0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->pairs, 2);
  auto second = updater.Update(*groups, /*policy_version=*/0);
  ASSERT_TRUE(second.ok());
  EXPECT_GT(second->loss.margin, first->loss.margin);
}

TEST_F(PolicyUpdateTest, MalformedGroupsAreRejected) {
  Group g;
  g.input = {8};
  g.samples.push_back(Sample{{32, 33, 34, 35}, {-1.0f}, 0, 0.0});
  PolicyUpdater updater(policy_.get(), reference_.get(), layout_, RlOptimizerOptions{});
  EXPECT_EQ(updater.Update({g}, /*policy_version=*/0).status().code(),
            absl::StatusCode::kInvalidArgument);
  g.samples[0].policy_logprobs = {-1, -1, -1, -1};
  g.samples[0].reward = std::nan("");
  EXPECT_EQ(updater.Update({g}, /*policy_version=*/0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PolicyUpdateTest, SamplesFromAnotherPolicyVersionAreRefusedAndNothingChanges) {
  RolloutRequest req;
  req.inputs = {{8, 9}};
  req.k = 2;
  auto groups = SampleGroups(*policy_, layout_, req, /*policy_version=*/3);
  ASSERT_TRUE(groups.ok());
  (*groups)[0].samples[0].reward = 1.0;
  const torch::Tensor before = policy_->parameters()[0].clone();
  PolicyUpdater updater(policy_.get(), reference_.get(), layout_, RlOptimizerOptions{});
  // Stale: version 3 samples cannot update version 5 with no lag allowed.
  EXPECT_EQ(updater.Update(*groups, /*policy_version=*/5).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // From the future.
  EXPECT_EQ(updater.Update(*groups, /*policy_version=*/2).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(torch::equal(before, policy_->parameters()[0]));
  // Within the allowed lag it trains.
  EXPECT_TRUE(updater.Update(*groups, /*policy_version=*/5, /*max_lag=*/2).ok());
}

// grpo.understanding_weight scales the caption samples' advantages only: at 0 a GRPO step
// on caption groups changes nothing (the policy equals the reference, so the KL term has
// no gradient), at 1 it moves the better caption up, and image groups are unaffected.
TEST_F(PolicyUpdateTest, UnderstandingWeightScalesOnlyTheCaptionAdvantages) {
  RolloutRequest req;
  req.task = Task::kUnderstanding;
  req.inputs = {{32, 33, 34, 35}};
  req.k = 2;
  auto captions = SampleGroups(*policy_, layout_, req, 0);
  ASSERT_TRUE(captions.ok());
  Group& g = (*captions)[0];
  ASSERT_NE(g.samples[0].output, g.samples[1].output);
  g.samples[0].reward = 1.0;
  g.samples[1].reward = -1.0;
  const double good0 = SampleLogprob(g, g.samples[0]);
  RlOptimizerOptions o;
  o.lr = 1e-2;
  o.grpo.understanding_weight = 0.0;
  const torch::Tensor before = policy_->parameters()[0].clone();
  {
    PolicyUpdater updater(policy_.get(), reference_.get(), layout_, o);
    ASSERT_TRUE(updater.Update(*captions, 0).ok());
  }
  EXPECT_TRUE(torch::equal(before, policy_->parameters()[0]));
  // Image groups train at any understanding weight.
  req.task = Task::kGeneration;
  req.inputs = {{8, 9}};
  auto images = SampleGroups(*policy_, layout_, req, 0);
  ASSERT_TRUE(images.ok());
  (*images)[0].samples[0].reward = 1.0;
  {
    PolicyUpdater updater(policy_.get(), reference_.get(), layout_, o);
    ASSERT_TRUE(updater.Update(*images, 0).ok());
  }
  EXPECT_FALSE(torch::equal(before, policy_->parameters()[0]));
  o.grpo.understanding_weight = 1.0;
  PolicyUpdater updater(policy_.get(), reference_.get(), layout_, o);
  ASSERT_TRUE(updater.Update(*captions, 0).ok());
  EXPECT_GT(SampleLogprob(g, g.samples[0]), good0);
}

}  // namespace
}  // namespace duet
