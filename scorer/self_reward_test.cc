#include "scorer/self_reward.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/model/test_models.h"
#include "common/world/text_tokenizer.h"

namespace duet {
namespace {

TokenLayout Layout() { return testing::TinyTestLayout(); }

TEST(ReversedSequenceTest, GeneratedImageScoresThePromptGivenTheImage) {
  const TokenLayout l = Layout();
  RewardQuery q{Task::kGeneration, /*input=*/{8, 9}, /*output=*/{32, 33, 34, 35}};
  auto r = ReversedSequence(l, q);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<int64_t> expected = {l.bos, l.describe, l.boi, 32, 33,   34,
                                         35,    l.eoi,      8,     9,  l.eos};
  EXPECT_EQ(r->first, expected);
  EXPECT_EQ(r->second.first, 8);
  EXPECT_EQ(r->second.second, 11);  // "8 9 <eos>"
}

TEST(ReversedSequenceTest, SampledCaptionScoresTheImageGivenTheCaption) {
  const TokenLayout l = Layout();
  RewardQuery q{Task::kUnderstanding, /*input=*/{40, 41, 42, 43},
                /*output=*/{10, 11, l.eos}};
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
  EXPECT_EQ(
      ReversedSequence(l, {Task::kGeneration, {40}, {32, 33, 34, 35}}).status().code(),
      absl::StatusCode::kInvalidArgument);  // prompt is not text
  EXPECT_EQ(ReversedSequence(l, {Task::kUnderstanding, {32, 33, 34, 35}, {10, 40}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // caption holds an image code
}

TEST(ComputeSelfRewardsTest, EqualsTheMeanLogLikelihoodOfTheSpan) {
  const TokenLayout l = Layout();
  Transformer m =
      *Transformer::Create(testing::TinyTestConfig(l.vocab_size(), /*kv_heads=*/4), 3);
  std::vector<RewardQuery> qs = {
      {Task::kGeneration, {8, 9}, {32, 33, 34, 35}},
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

TEST(NullSequenceTest, ReplacesTheInputWithPadsAndScoresTheSameTokens) {
  const TokenLayout l = Layout();
  RewardQuery cap{Task::kUnderstanding, /*input=*/{40, 41, 42, 43},
                  /*output=*/{10, 11, l.eos}};
  auto r = NullSequence(l, cap);
  ASSERT_TRUE(r.ok()) << r.status();
  // The unconditional row of classifier-free guidance: one <pad> per caption word.
  const std::vector<int64_t> expected = {l.bos, l.draw, l.pad, l.pad, l.boi,
                                         40,    41,     42,    43};
  EXPECT_EQ(r->first, expected);
  EXPECT_EQ(r->second, std::make_pair(int64_t{5}, int64_t{9}));
  RewardQuery img{Task::kGeneration, /*input=*/{8, 9}, /*output=*/{32, 33, 34, 35}};
  auto n = NullSequence(l, img);
  ASSERT_TRUE(n.ok()) << n.status();
  const std::vector<int64_t> expected_img = {
      l.bos, l.describe, l.boi, l.pad, l.pad, l.pad, l.pad, l.eoi, 8, 9, l.eos};
  EXPECT_EQ(n->first, expected_img);
  EXPECT_EQ(n->second, ReversedSequence(l, img)->second);
  EXPECT_EQ(NullSequence(l, {Task::kGeneration, {8}, {32, 33}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ForwardSequenceTest, ScoresTheOutputInTheDirectionItWasSampled) {
  const TokenLayout l = Layout();
  auto cap =
      ForwardSequence(l, {Task::kUnderstanding, {40, 41, 42, 43}, {10, 11, l.eos}});
  ASSERT_TRUE(cap.ok()) << cap.status();
  const std::vector<int64_t> expected = {l.bos, l.describe, l.boi, 40, 41,   42,
                                         43,    l.eoi,      10,    11, l.eos};
  EXPECT_EQ(cap->first, expected);
  EXPECT_EQ(cap->second,
            std::make_pair(int64_t{8}, int64_t{11}));  // the caption and its <eos>
  auto img = ForwardSequence(l, {Task::kGeneration, {8, 9}, {32, 33, 34, 35}});
  ASSERT_TRUE(img.ok()) << img.status();
  const std::vector<int64_t> expected_img = {l.bos, l.draw, 8, 9, l.boi, 32, 33, 34, 35};
  EXPECT_EQ(img->first, expected_img);
  EXPECT_EQ(img->second, std::make_pair(int64_t{5}, int64_t{9}));
}

TEST(CombineRewardTest, EachKindFromThePerTokenScores) {
  PairScores s;
  s.conditional = {-1.0f, -2.0f, -3.0f, -4.0f, -5.0f};
  s.null = {-2.0f, -2.0f, -1.0f, -1.0f, -6.0f};  // PMI per token: 1, 0, -2, -3, 1
  s.forward = {-0.5f, -1.5f};
  EXPECT_DOUBLE_EQ(CombineReward(RewardKind::kLikelihood, s), -3.0);
  EXPECT_DOUBLE_EQ(CombineReward(RewardKind::kPmi, s), -3.0 / 5);
  EXPECT_DOUBLE_EQ(CombineReward(RewardKind::kPmiWorst, s),
                   (0.0 - 2 - 3 + 1) / 4);  // the 4 lowest
  EXPECT_DOUBLE_EQ(CombineReward(RewardKind::kJoint, s), (-15.0 - 2.0) / 5);
}

TEST(CombineRewardTest, ContrastAddsTheLogPosteriorOfTheCaptionAmongItsVariants) {
  PairScores s;
  s.conditional = {-1.0f, -2.0f, -3.0f, -4.0f, -5.0f};  // sum -15
  s.forward = {-0.5f, -1.5f};
  const double joint = (-15.0 - 2.0) / 5;
  EXPECT_DOUBLE_EQ(CombineReward(RewardKind::kContrast, s), joint);  // no variants: joint
  s.variant_sums = {-15.0, -15.0 - std::log(3.0)};
  // p(caption) : p(v1) : p(v2) = 1 : 1 : 1/3, so the caption's posterior is 3/7.
  EXPECT_NEAR(CombineReward(RewardKind::kContrast, s), joint + std::log(3.0 / 7.0) / 5,
              1e-12);
  s.variant_sums = {-1015.0,
                    -2015.0};  // variants far less likely: posterior ~1, no overflow
  EXPECT_NEAR(CombineReward(RewardKind::kContrast, s), joint, 1e-12);
  s.variant_sums = {-5.0};  // a variant e^10 times as likely
  EXPECT_NEAR(CombineReward(RewardKind::kContrast, s),
              joint + (-10.0 - std::log1p(std::exp(-10.0))) / 5, 1e-12);
}

TEST(RewardKindTest, NamesRoundTripAndUnknownNamesAreRefused) {
  for (RewardKind k : kAllRewardKinds) EXPECT_EQ(*ParseRewardKind(RewardKindName(k)), k);
  auto bad = ParseRewardKind("clip");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("joint"), std::string::npos);
}

TEST(ComputeSelfRewardsTest, KindsPickTheirPassesPerDirection) {
  const TokenLayout l = Layout();
  Transformer m =
      *Transformer::Create(testing::TinyTestConfig(l.vocab_size(), /*kv_heads=*/4), 3);
  const std::vector<RewardQuery> qs = {
      {Task::kGeneration, {8, 9}, {32, 33, 34, 35}},
      {Task::kUnderstanding, {40, 41, 42, 43}, {10, 11, l.eos}},
      {Task::kUnderstanding, {44, 45, 46, 47}, {12, l.eos}}};
  auto plain = ComputeSelfRewards(m, l, qs, /*max_batch=*/2);
  ASSERT_TRUE(plain.ok()) << plain.status();
  // Caption kinds that need extra passes leave the image reward bit-identical.
  for (RewardKind caption : kAllRewardKinds) {
    auto r = ComputeSelfRewards(m, l, qs, /*max_batch=*/2,
                                SelfRewardKinds{RewardKind::kLikelihood, caption});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)[0], (*plain)[0]) << RewardKindName(caption);
  }
  auto pmi = ComputeSelfRewards(m, l, qs, /*max_batch=*/2,
                                SelfRewardKinds{RewardKind::kPmi, RewardKind::kPmi});
  auto joint = ComputeSelfRewards(
      m, l, qs, /*max_batch=*/2, SelfRewardKinds{RewardKind::kJoint, RewardKind::kJoint});
  ASSERT_TRUE(pmi.ok() && joint.ok());
  for (size_t i = 0; i < qs.size(); ++i) {
    const auto rev = *ReversedSequence(l, qs[i]);
    const auto null = *NullSequence(l, qs[i]);
    const auto fwd = *ForwardSequence(l, qs[i]);
    const SpanScore c = ScoreSpans(m, l, {rev.first}, {rev.second})->at(0);
    const SpanScore n = ScoreSpans(m, l, {null.first}, {null.second})->at(0);
    const SpanScore f = ScoreSpans(m, l, {fwd.first}, {fwd.second})->at(0);
    EXPECT_NEAR((*pmi)[i], c.mean_logprob - n.mean_logprob, 1e-5);
    EXPECT_NEAR((*joint)[i], (c.sum_logprob + f.sum_logprob) / c.count, 1e-5);
    EXPECT_LT((*joint)[i], (*plain)[i]);  // the forward log-likelihood is negative
  }
}

TEST(CaptionVariantsTest, OnlyPositionCaptionsOfTheGrammarHaveRelationVariants) {
  TokenLayout l = Layout();
  l.max_caption_tokens = 12;
  const world::TextTokenizer tok(l);
  const std::vector<int64_t> image = {40, 41, 42, 43};
  const std::vector<int64_t> above = *tok.Encode("a red circle above a blue square");
  std::vector<int64_t> caption = above;
  caption.push_back(l.eos);
  const std::vector<RewardQuery> variants =
      CaptionVariants(l, {Task::kUnderstanding, image, caption});
  ASSERT_EQ(variants.size(), 3u);
  EXPECT_EQ(*tok.Decode(variants[0].output), "a red circle left of a blue square");
  EXPECT_EQ(*tok.Decode(variants[2].output), "a red circle below a blue square");
  EXPECT_EQ(variants[0].input, image);
  // A prompt's variants replace the prompt, and keep the generated image.
  const std::vector<RewardQuery> prompts =
      CaptionVariants(l, {Task::kGeneration, above, image});
  ASSERT_EQ(prompts.size(), 3u);
  EXPECT_EQ(*tok.Decode(prompts[0].input), "a red circle left of a blue square");
  EXPECT_EQ(prompts[0].output, image);
  EXPECT_TRUE(
      CaptionVariants(l, {Task::kUnderstanding, image, *tok.Encode("two red circles")})
          .empty());
  EXPECT_TRUE(CaptionVariants(l, {Task::kUnderstanding, image,
                                  *tok.Encode("a red circle and a blue square")})
                  .empty());
  EXPECT_TRUE(
      CaptionVariants(l, {Task::kUnderstanding, image, *tok.Encode("above above red")})
          .empty());
  EXPECT_TRUE(CaptionVariants(l, {Task::kUnderstanding, image, {}}).empty());
}

TEST(ComputeSelfRewardsTest, ContrastScoresEachVariantWithTheSameModel) {
  TokenLayout l = Layout();
  l.max_caption_tokens = 12;
  const world::TextTokenizer tok(l);
  Transformer m =
      *Transformer::Create(testing::TinyTestConfig(l.vocab_size(), /*kv_heads=*/4), 5);
  const std::vector<int64_t> image = {40, 41, 42, 43};
  const std::vector<RewardQuery> qs = {
      {Task::kUnderstanding, image, *tok.Encode("a red circle below a blue square")},
      {Task::kUnderstanding, image, *tok.Encode("a red circle")},
      {Task::kGeneration, *tok.Encode("a green cross left of a red circle"), image}};
  const SelfRewardKinds contrast{RewardKind::kContrast, RewardKind::kContrast};
  auto r = ComputeSelfRewards(m, l, qs, /*max_batch=*/3, contrast);
  auto joint = ComputeSelfRewards(
      m, l, qs, /*max_batch=*/3, SelfRewardKinds{RewardKind::kJoint, RewardKind::kJoint});
  ASSERT_TRUE(r.ok() && joint.ok()) << r.status();
  EXPECT_EQ((*r)[1], (*joint)[1]);  // no variants
  for (size_t i : {size_t{0}, size_t{2}}) {
    auto score = [&](const RewardQuery& q) {
      const auto rev = *ReversedSequence(l, q);
      return ScoreSpans(m, l, {rev.first}, {rev.second})->at(0);
    };
    const SpanScore own = score(qs[i]);
    double mass = std::exp(own.sum_logprob);
    for (const RewardQuery& v : CaptionVariants(l, qs[i]))
      mass += std::exp(score(v).sum_logprob);
    const double expected = (*joint)[i] + (own.sum_logprob - std::log(mass)) / own.count;
    EXPECT_NEAR((*r)[i], expected, 1e-4) << i;
    EXPECT_LT((*r)[i], (*joint)[i]);  // a posterior below 1
  }
}

}  // namespace
}  // namespace duet
