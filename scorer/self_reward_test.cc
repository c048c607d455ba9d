#include "scorer/self_reward.h"

#include <gtest/gtest.h>

#include "model/test_models.h"

namespace duet {
namespace {

TokenLayout Layout() { return testing::TinyTestLayout(); }

TEST(ReversedSequenceTest, GeneratedImageScoresThePromptGivenTheImage) {
  const TokenLayout l = Layout();
  RewardQuery q{Task::kGeneration, /*input=*/{8, 9}, /*output=*/{32, 33, 34, 35}};
  auto r = ReversedSequence(l, q);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<int64_t> expected = {l.bos, l.describe, l.boi, 32, 33, 34, 35, l.eoi, 8, 9, l.eos};
  EXPECT_EQ(r->first, expected);
  EXPECT_EQ(r->second.first, 8);
  EXPECT_EQ(r->second.second, 11);  // "8 9 <eos>"
}

TEST(ReversedSequenceTest, SampledCaptionScoresTheImageGivenTheCaption) {
  const TokenLayout l = Layout();
  RewardQuery q{Task::kUnderstanding, /*input=*/{40, 41, 42, 43}, /*output=*/{10, 11, l.eos}};
  auto r = ReversedSequence(l, q);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<int64_t> expected = {l.bos, l.draw, 10, 11, l.boi, 40, 41, 42, 43};
  EXPECT_EQ(r->first, expected);
  EXPECT_EQ(r->second.first, 5);
  EXPECT_EQ(r->second.second, 9);  // the four image codes
}

TEST(ReversedSequenceTest, MalformedPairsAreRejected) {
  const TokenLayout l = Layout();
  EXPECT_EQ(ReversedSequence(l, {Task::kGeneration, {8}, {32, 33}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // 2 codes, not 4
  EXPECT_EQ(ReversedSequence(l, {Task::kGeneration, {40}, {32, 33, 34, 35}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // prompt is not text
  EXPECT_EQ(ReversedSequence(l, {Task::kUnderstanding, {32, 33, 34, 35}, {10, 40}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // caption holds an image code
}

TEST(ComputeSelfRewardsTest, EqualsTheMeanLogLikelihoodOfTheSpan) {
  const TokenLayout l = Layout();
  Transformer m = *Transformer::Create(testing::TinyTestConfig(l.vocab_size(), /*kv_heads=*/4), 3);
  std::vector<RewardQuery> qs = {{Task::kGeneration, {8, 9}, {32, 33, 34, 35}},
                                 {Task::kUnderstanding, {40, 41, 42, 43}, {10, 11, l.eos}},
                                 {Task::kGeneration, {12}, {36, 37, 38, 39}}};
  auto rewards = ComputeSelfRewards(m, l, qs, /*max_batch=*/2);
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  ASSERT_EQ(rewards->size(), 3u);
  for (size_t i = 0; i < qs.size(); ++i) {
    auto r = *ReversedSequence(l, qs[i]);
    auto s = *ScoreSpans(m, l, {r.first}, {r.second});
    EXPECT_NEAR((*rewards)[i], s[0].mean_logprob, 1e-5);
    EXPECT_LT((*rewards)[i], 0.0);
  }
  qs.push_back({Task::kGeneration, {8}, {1, 2, 3, 4}});
  auto bad = ComputeSelfRewards(m, l, qs);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("query 3"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace duet
