#include "common/model/generation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/model/test_models.h"

namespace duet {
namespace {

TokenLayout SmallLayout() {
  TokenLayout l;
  l.image_end = l.image_begin + 24;  // vocab 56
  l.image_tokens = 6;
  l.max_caption_tokens = 5;
  return l;
}

Transformer SmallModel(const TokenLayout& layout) {
  return *Transformer::Create(testing::TinyTestConfig(layout.vocab_size()), 21);
}

TEST(SamplingTest, SeededUniformIsAPureFunction) {
  EXPECT_EQ(SeededUniform(5, 3), SeededUniform(5, 3));
  EXPECT_NE(SeededUniform(5, 3), SeededUniform(5, 4));
  EXPECT_NE(SeededUniform(5, 3), SeededUniform(6, 3));
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = SeededUniform(i, 0);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}

TEST(SamplingTest, FrequenciesFollowTheDistribution) {
  torch::Tensor logits = torch::log(torch::tensor({{0.1f, 0.2f, 0.7f}}));
  std::vector<int> counts(3, 0);
  for (uint64_t s = 0; s < 5000; ++s) {
    SampledTokens t = SampleTokens(logits, {}, SamplingParams{}, {s}, 0);
    counts[t.tokens[0].item<int64_t>()]++;
    EXPECT_NEAR(
        t.logprobs[0].item<float>(),
        std::log(std::vector<float>{0.1f, 0.2f, 0.7f}[t.tokens[0].item<int64_t>()]),
        1e-5);
  }
  EXPECT_NEAR(counts[0] / 5000.0, 0.1, 0.02);
  EXPECT_NEAR(counts[1] / 5000.0, 0.2, 0.02);
  EXPECT_NEAR(counts[2] / 5000.0, 0.7, 0.02);
}

TEST(SamplingTest, TopKTopPAndMaskRestrictTheSupport) {
  torch::Tensor logits = torch::log(torch::tensor({{0.05f, 0.15f, 0.3f, 0.5f}}));
  SamplingParams top1;
  top1.top_k = 1;
  SamplingParams nucleus;
  nucleus.top_p = 0.7;  // keeps {3, 2}
  torch::Tensor allowed = torch::tensor({true, true, false, false});
  for (uint64_t s = 0; s < 500; ++s) {
    EXPECT_EQ(SampleTokens(logits, {}, top1, {s}, 0).tokens[0].item<int64_t>(), 3);
    const int64_t n = SampleTokens(logits, {}, nucleus, {s}, 0).tokens[0].item<int64_t>();
    EXPECT_TRUE(n == 3 || n == 2) << n;
    const int64_t m =
        SampleTokens(logits, allowed, SamplingParams{}, {s}, 0).tokens[0].item<int64_t>();
    EXPECT_TRUE(m == 0 || m == 1) << m;
  }
  SamplingParams bad;
  bad.top_p = 0;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  bad = SamplingParams{};
  bad.temperature = std::nan("");
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
}

class GenerationTest : public ::testing::Test {
 protected:
  GenerationTest() : layout_(SmallLayout()), model_(SmallModel(layout_)) {}
  TokenLayout layout_;
  Transformer model_;
};

TEST_F(GenerationTest, ImagesHoldOnlyImageCodesOfTheRightCount) {
  TokenRows captions = {{8, 9}, {10, 11, 12, 13}, {14}};
  ImageGenerationOptions opts;
  opts.cfg_scale = 3.0;
  opts.sampling.temperature = 1.5;
  auto out = GenerateImages(model_, layout_, captions, {1, 2, 3}, opts);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->tokens.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(out->tokens[i].size(), 6u);
    ASSERT_EQ(out->logprobs[i].size(), 6u);
    for (size_t j = 0; j < 6; ++j) {
      EXPECT_TRUE(layout_.IsImage(out->tokens[i][j])) << out->tokens[i][j];
      EXPECT_LE(out->logprobs[i][j], 0.0f);
    }
  }
}

TEST_F(GenerationTest, CaptionsHoldOnlyTextAndEndWithEos) {
  TokenRows images;
  for (int i = 0; i < 16; ++i)
    images.push_back(std::vector<int64_t>(6, layout_.image_begin + i));
  std::vector<uint64_t> seeds(16);
  for (int i = 0; i < 16; ++i) seeds[i] = 100 + i;
  SamplingParams hot;
  hot.temperature = 2.0;
  auto out = GenerateCaptions(model_, layout_, images, seeds, hot);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const auto& row : out->tokens) {
    ASSERT_FALSE(row.empty());
    ASSERT_LE(row.size(), static_cast<size_t>(layout_.max_caption_tokens + 1));
    EXPECT_EQ(row.back(), layout_.eos);
    for (size_t j = 0; j + 1 < row.size(); ++j)
      EXPECT_TRUE(layout_.IsText(row[j])) << row[j];
  }
}

TEST_F(GenerationTest, ASeededRowIsReproducibleWhateverBatchItRunsIn) {
  ImageGenerationOptions opts;
  opts.cfg_scale = 2.0;
  auto alone = GenerateImages(model_, layout_, {{9, 10, 11}}, {42}, opts);
  auto batched = GenerateImages(
      model_, layout_, {{8}, {12, 13, 14, 15}, {9, 10, 11}, {8, 8}}, {1, 2, 42, 3}, opts);
  ASSERT_TRUE(alone.ok() && batched.ok());
  EXPECT_EQ(alone->tokens[0], batched->tokens[2]);
  auto again = GenerateImages(model_, layout_, {{9, 10, 11}}, {42}, opts);
  EXPECT_EQ(alone->tokens[0], again->tokens[0]);
  auto other_seed = GenerateImages(model_, layout_, {{9, 10, 11}}, {43}, opts);
  EXPECT_NE(alone->tokens[0], other_seed->tokens[0]);

  TokenRows image = {std::vector<int64_t>(6, layout_.image_begin + 3)};
  auto c1 = GenerateCaptions(model_, layout_, image, {7}, SamplingParams{});
  TokenRows images = {std::vector<int64_t>(6, layout_.image_begin + 5), image[0]};
  auto c2 = GenerateCaptions(model_, layout_, images, {8, 7}, SamplingParams{});
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_EQ(c1->tokens[0], c2->tokens[1]);
}

TEST_F(GenerationTest, GuidanceScaleOneEqualsConditionalSampling) {
  TokenRows captions = {{8, 9, 10}, {11}, {12, 13}};
  ImageGenerationOptions cond, guided;
  guided.cfg_scale = 1.0;
  auto a = GenerateImages(model_, layout_, captions, {5, 6, 7}, cond);
  auto b = GenerateImages(model_, layout_, captions, {5, 6, 7}, guided);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  for (size_t i = 0; i < 3; ++i) {
    for (size_t j = 0; j < 6; ++j)
      EXPECT_NEAR(a->logprobs[i][j], b->logprobs[i][j], 1e-4);
  }
  guided.cfg_scale = 8.0;
  auto c = GenerateImages(model_, layout_, captions, {5, 6, 7}, guided);
  EXPECT_NE(a->tokens, c->tokens);  // guidance does change the distribution
}

TEST_F(GenerationTest, ScoreSpansMatchesTheTeacherForcedLogits) {
  TokenRows seqs = {{1, 5, 3, 40, 41, 4, 8, 9, 2}, {1, 6, 10, 3, 33}};
  std::vector<std::pair<int64_t, int64_t>> spans = {{6, 9}, {2, 3}};
  auto scores = ScoreSpans(model_, layout_, seqs, spans);
  ASSERT_TRUE(scores.ok()) << scores.status();
  torch::InferenceMode guard;
  torch::Tensor logits =
      *model_.Forward(torch::tensor(seqs[0], torch::kInt64).unsqueeze(0));
  torch::Tensor lp = torch::log_softmax(logits[0], -1);
  double expected = 0;
  for (int64_t j = 6; j < 9; ++j) expected += lp[j - 1][seqs[0][j]].item<float>();
  EXPECT_NEAR((*scores)[0].sum_logprob, expected, 1e-4);
  EXPECT_NEAR((*scores)[0].mean_logprob, expected / 3, 1e-4);
  ASSERT_EQ((*scores)[0].token_logprobs.size(), 3u);
  for (int64_t j = 6; j < 9; ++j) {
    EXPECT_NEAR((*scores)[0].token_logprobs[j - 6], lp[j - 1][seqs[0][j]].item<float>(),
                1e-5);
  }
  ASSERT_EQ((*scores)[1].token_logprobs.size(), 1u);
  EXPECT_EQ((*scores)[1].count, 1);
  EXPECT_EQ(ScoreSpans(model_, layout_, seqs, {{0, 2}, {2, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ScoreSpans(model_, layout_, seqs, {{6, 10}, {2, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(GenerationTest, BadRequestsAreRejectedWithTheField) {
  ImageGenerationOptions opts;
  auto s = GenerateImages(model_, layout_, {{8, 40}}, {1}, opts);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("not a text token"), std::string::npos);
  EXPECT_EQ(GenerateImages(model_, layout_, {{8}}, {1, 2}, opts).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GenerateCaptions(model_, layout_, {{33, 34}}, {1}, SamplingParams{})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  TokenLayout other = layout_;
  other.image_end += 1;
  EXPECT_EQ(GenerateCaptions(model_, other, {}, {}, SamplingParams{}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace duet
