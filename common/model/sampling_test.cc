#include "common/model/sampling.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <set>
#include <vector>

namespace duet {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Logits [B, V] whose every row has the softmax `probs`.
torch::Tensor LogitsFor(const std::vector<float>& probs, int64_t rows) {
  return torch::tensor(probs).log().unsqueeze(0).repeat({rows, 1});
}

std::vector<uint64_t> Seeds(int64_t n, uint64_t first = 0) {
  std::vector<uint64_t> seeds(n);
  for (int64_t i = 0; i < n; ++i) seeds[i] = first + static_cast<uint64_t>(i);
  return seeds;
}

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kInt64).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// How often each token was drawn, as a fraction of the rows.
std::vector<double> Frequencies(const torch::Tensor& tokens, int64_t vocab) {
  std::vector<double> f(vocab, 0.0);
  for (int64_t t : ToVector(tokens)) f.at(t) += 1.0 / tokens.numel();
  return f;
}

TEST(SamplingParamsTest, DefaultsAndBoundaryValuesAreValid) {
  EXPECT_TRUE(SamplingParams().Validate().ok());
  SamplingParams p;
  p.temperature = 0;  // greedy
  p.top_k = 0;
  p.top_p = 1.0;
  EXPECT_TRUE(p.Validate().ok());
  p.temperature = 1e6;
  p.top_k = 1 << 20;
  p.top_p = 1e-9;
  EXPECT_TRUE(p.Validate().ok());
}

TEST(SamplingParamsTest, RejectsBadTemperature) {
  for (double t : {-1e-9, -1.0, kInf, -kInf, kNaN}) {
    SCOPED_TRACE(t);
    SamplingParams p;
    p.temperature = t;
    absl::Status s = p.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("temperature"), std::string::npos) << s;
  }
}

TEST(SamplingParamsTest, RejectsBadTopK) {
  SamplingParams p;
  p.top_k = -1;
  absl::Status s = p.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("top_k"), std::string::npos) << s;
}

TEST(SamplingParamsTest, RejectsBadTopP) {
  for (double top_p : {0.0, -0.5, 1.0 + 1e-9, 2.0, kInf, kNaN}) {
    SCOPED_TRACE(top_p);
    SamplingParams p;
    p.top_p = top_p;
    absl::Status s = p.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("top_p"), std::string::npos) << s;
  }
}

TEST(SeededUniformTest, IsDeterministicInRangeAndVaries) {
  std::set<double> seen;
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{42}, ~uint64_t{0}}) {
    for (uint64_t step = 0; step < 50; ++step) {
      const double u = SeededUniform(seed, step);
      EXPECT_GE(u, 0.0);
      EXPECT_LT(u, 1.0);
      EXPECT_EQ(u, SeededUniform(seed, step));
      seen.insert(u);
    }
  }
  EXPECT_EQ(seen.size(), 200u);  // no collisions across seeds and steps
  // Roughly uniform: the mean of many draws is near 1/2.
  double sum = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) sum += SeededUniform(/*seed=*/7, /*step=*/i);
  EXPECT_NEAR(sum / n, 0.5, 0.02);
}

TEST(SampleTokensTest, FixedSeedsAreDeterministic) {
  torch::manual_seed(0);
  torch::Tensor logits = torch::randn({64, 50});
  const std::vector<uint64_t> seeds = Seeds(64, /*first=*/1000);
  SamplingParams p;
  SampledTokens a = SampleTokens(logits, torch::Tensor(), p, seeds, /*step=*/3);
  // The global torch RNG must play no part.
  torch::manual_seed(12345);
  torch::randn({100});
  SampledTokens b = SampleTokens(logits, torch::Tensor(), p, seeds, /*step=*/3);
  EXPECT_EQ(a.tokens.scalar_type(), torch::kInt64);
  EXPECT_EQ(a.tokens.sizes(), (std::vector<int64_t>{64}));
  EXPECT_EQ(a.logprobs.sizes(), (std::vector<int64_t>{64}));
  EXPECT_TRUE(torch::equal(a.tokens, b.tokens));
  EXPECT_TRUE(torch::equal(a.logprobs, b.logprobs));
  // Another step draws different numbers.
  SampledTokens c = SampleTokens(logits, torch::Tensor(), p, seeds, /*step=*/4);
  EXPECT_FALSE(torch::equal(a.tokens, c.tokens));
}

TEST(SampleTokensTest, SampleDoesNotDependOnTheRowOrBatch) {
  const torch::Tensor row =
      torch::tensor({0.1f, 2.0f, -1.0f, 0.5f, 1.5f, 0.0f, 1.0f, -0.3f});
  const int64_t n = 32;
  SamplingParams p;
  // Each seed alone, then all in one batch in reverse order.
  std::vector<int64_t> alone(n);
  for (int64_t i = 0; i < n; ++i) {
    alone[i] =
        SampleTokens(row.unsqueeze(0), torch::Tensor(), p, {static_cast<uint64_t>(i)},
                     /*step=*/9)
            .tokens.item<int64_t>();
  }
  std::vector<uint64_t> reversed(n);
  for (int64_t i = 0; i < n; ++i) reversed[i] = static_cast<uint64_t>(n - 1 - i);
  std::vector<int64_t> batched =
      ToVector(SampleTokens(row.unsqueeze(0).repeat({n, 1}), torch::Tensor(), p, reversed,
                            /*step=*/9)
                   .tokens);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(batched[n - 1 - i], alone[i]) << "seed " << i;
  EXPECT_GT(std::set<int64_t>(alone.begin(), alone.end()).size(), 1u);
}

TEST(SampleTokensTest, TemperatureZeroIsGreedy) {
  torch::manual_seed(1);
  torch::Tensor logits = torch::randn({16, 30});
  SamplingParams p;
  p.temperature = 0;
  for (uint64_t first_seed : {uint64_t{0}, uint64_t{99}}) {
    SampledTokens s =
        SampleTokens(logits, torch::Tensor(), p, Seeds(16, first_seed), /*step=*/0);
    EXPECT_TRUE(torch::equal(s.tokens, logits.argmax(-1)));
    torch::Tensor expected =
        torch::log_softmax(logits, -1).gather(1, s.tokens.unsqueeze(1)).squeeze(1);
    EXPECT_TRUE(torch::allclose(s.logprobs, expected, /*rtol=*/1e-5, /*atol=*/1e-6));
  }
}

TEST(SampleTokensTest, GreedyRespectsTheMask) {
  torch::Tensor logits =
      torch::tensor({{5.0f, 1.0f, 3.0f, 0.0f}, {0.0f, 9.0f, 1.0f, 2.0f}});
  torch::Tensor allowed = torch::tensor({false, true, true, true});
  SamplingParams p;
  p.temperature = 0;
  SampledTokens s = SampleTokens(logits, allowed, p, Seeds(2), /*step=*/0);
  EXPECT_EQ(ToVector(s.tokens), (std::vector<int64_t>{2, 1}));
}

TEST(SampleTokensTest, TopKOnePicksTheArgmax) {
  torch::manual_seed(2);
  torch::Tensor logits = torch::randn({200, 40});
  SamplingParams p;
  p.temperature = 1.5;
  p.top_k = 1;
  SampledTokens s = SampleTokens(logits, torch::Tensor(), p, Seeds(200), /*step=*/5);
  EXPECT_TRUE(torch::equal(s.tokens, logits.argmax(-1)));
  // The only token left has probability 1.
  EXPECT_TRUE(
      torch::allclose(s.logprobs, torch::zeros({200}), /*rtol=*/0, /*atol=*/1e-6));
}

TEST(SampleTokensTest, TopKKeepsTheKMostLikely) {
  // Probabilities 0.4 0.3 0.2 0.1: top-2 keeps tokens 0 and 1, renormalized to 4/7, 3/7.
  const int64_t n = 4000;
  torch::Tensor logits = LogitsFor({0.4f, 0.3f, 0.2f, 0.1f}, n);
  SamplingParams p;
  p.top_k = 2;
  SampledTokens s = SampleTokens(logits, torch::Tensor(), p, Seeds(n), /*step=*/0);
  std::vector<double> f = Frequencies(s.tokens, 4);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_EQ(f[3], 0.0);
  EXPECT_NEAR(f[0], 4.0 / 7, 0.03);
  EXPECT_NEAR(f[1], 3.0 / 7, 0.03);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = s.tokens[i].item<int64_t>();
    EXPECT_NEAR(s.logprobs[i].item<float>(), std::log(t == 0 ? 4.0 / 7 : 3.0 / 7), 1e-5);
  }
}

TEST(SampleTokensTest, TopPKeepsTheNucleus) {
  // Probabilities 0.5 0.3 0.15 0.05. top_p = 0.7: the mass before token 1 is 0.5 < 0.7,
  // so tokens {0, 1} (mass 0.8) are the smallest set reaching 0.7.
  const int64_t n = 4000;
  torch::Tensor logits = LogitsFor({0.15f, 0.5f, 0.05f, 0.3f}, n);  // shuffled order
  SamplingParams p;
  p.top_p = 0.7;
  SampledTokens s = SampleTokens(logits, torch::Tensor(), p, Seeds(n), /*step=*/1);
  std::vector<double> f = Frequencies(s.tokens, 4);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 0.5 / 0.8, 0.03);
  EXPECT_NEAR(f[3], 0.3 / 0.8, 0.03);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = s.tokens[i].item<int64_t>();
    EXPECT_NEAR(s.logprobs[i].item<float>(), std::log(t == 1 ? 0.5 / 0.8 : 0.3 / 0.8),
                1e-5);
  }
}

TEST(SampleTokensTest, TopPBoundaries) {
  const int64_t n = 500;
  torch::Tensor logits = LogitsFor({0.5f, 0.3f, 0.15f, 0.05f}, n);
  SamplingParams p;
  // Mass 0.4 is reached by the first token alone.
  p.top_p = 0.4;
  EXPECT_TRUE(torch::equal(SampleTokens(logits, {}, p, Seeds(n), 0).tokens,
                           torch::zeros({n}, torch::kInt64)));
  // A tiny top_p still keeps the most likely token.
  p.top_p = 1e-6;
  EXPECT_TRUE(torch::equal(SampleTokens(logits, {}, p, Seeds(n), 0).tokens,
                           torch::zeros({n}, torch::kInt64)));
  // 0.9 needs three tokens (0.5 + 0.3 < 0.9 <= 0.95).
  p.top_p = 0.9;
  std::vector<double> f = Frequencies(SampleTokens(logits, {}, p, Seeds(n), 0).tokens, 4);
  EXPECT_EQ(f[3], 0.0);
  EXPECT_GT(f[2], 0.0);
}

TEST(SampleTokensTest, FollowsTheDistributionAndTemperature) {
  const int64_t n = 6000;
  const std::vector<float> probs = {0.1f, 0.6f, 0.3f};
  torch::Tensor logits = LogitsFor(probs, n);
  SamplingParams p;
  SampledTokens s = SampleTokens(logits, torch::Tensor(), p, Seeds(n), /*step=*/2);
  std::vector<double> f = Frequencies(s.tokens, 3);
  for (int v = 0; v < 3; ++v) EXPECT_NEAR(f[v], probs[v], 0.03) << "token " << v;

  // Temperature 0.5 squares the odds: p_i^2 / sum p^2.
  p.temperature = 0.5;
  SampledTokens cold = SampleTokens(logits, torch::Tensor(), p, Seeds(n), /*step=*/2);
  const double z = 0.01 + 0.36 + 0.09;
  std::vector<double> fc = Frequencies(cold.tokens, 3);
  EXPECT_NEAR(fc[0], 0.01 / z, 0.03);
  EXPECT_NEAR(fc[1], 0.36 / z, 0.03);
  EXPECT_NEAR(fc[2], 0.09 / z, 0.03);
  // Log-probs are those of the tempered distribution.
  torch::Tensor expected =
      torch::log_softmax(logits / 0.5, -1).gather(1, cold.tokens.unsqueeze(1)).squeeze(1);
  EXPECT_TRUE(torch::allclose(cold.logprobs, expected, /*rtol=*/1e-4, /*atol=*/1e-5));
}

TEST(SampleTokensTest, MaskedTokensAreNeverDrawn) {
  const int64_t n = 2000;
  torch::Tensor logits = LogitsFor({0.7f, 0.1f, 0.1f, 0.1f}, n);
  SamplingParams p;
  // A [V] mask for every row.
  torch::Tensor allowed = torch::tensor({false, true, false, true});
  SampledTokens s = SampleTokens(logits, allowed, p, Seeds(n), /*step=*/0);
  std::vector<double> f = Frequencies(s.tokens, 4);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 0.5, 0.04);
  EXPECT_TRUE(torch::allclose(s.logprobs, torch::full({n}, std::log(0.5f)), /*rtol=*/0,
                              /*atol=*/1e-5));

  // A [B, V] mask: row i may only draw token i % 4.
  torch::Tensor per_row = torch::zeros({n, 4}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) per_row[i][i % 4] = true;
  SampledTokens r = SampleTokens(logits, per_row, p, Seeds(n), /*step=*/0);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(r.tokens[i].item<int64_t>(), i % 4) << "row " << i;
}

TEST(SampleTokensTest, ZeroProbabilityTokensAtTheEdgesAreNeverDrawn) {
  // Only the middle token is allowed; every uniform draw must land on it.
  const int64_t n = 1000;
  torch::Tensor logits = torch::zeros({n, 5});
  torch::Tensor allowed = torch::tensor({false, false, true, false, false});
  SampledTokens s = SampleTokens(logits, allowed, SamplingParams(), Seeds(n), /*step=*/0);
  EXPECT_TRUE(torch::equal(s.tokens, torch::full({n}, 2, torch::kInt64)));
  EXPECT_TRUE(torch::allclose(s.logprobs, torch::zeros({n}), /*rtol=*/0, /*atol=*/1e-6));
}

}  // namespace
}  // namespace duet
