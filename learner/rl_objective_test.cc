#include "learner/rl_objective.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace duet {
namespace {

torch::Tensor Log(std::vector<float> p) { return torch::tensor(p).log().unsqueeze(0); }

TEST(GroupAdvantagesTest, StandardizesWithinTheGroup) {
  std::vector<double> a = GroupAdvantages({1, 2, 3});
  const double s = std::sqrt(2.0 / 3.0);
  EXPECT_NEAR(a[0], -1 / s, 1e-5);
  EXPECT_NEAR(a[1], 0, 1e-9);
  EXPECT_NEAR(a[2], 1 / s, 1e-5);
  for (double x : GroupAdvantages({-0.7, -0.7, -0.7})) EXPECT_EQ(x, 0.0);
  EXPECT_TRUE(GroupAdvantages({}).empty());
}

TEST(KlK3Test, MatchesTheClosedForm) {
  torch::Tensor k = KlK3(torch::tensor({std::log(0.5f), std::log(0.3f)}),
                         torch::tensor({std::log(0.25f), std::log(0.3f)}));
  EXPECT_NEAR(k[0].item<float>(), 0.5 + std::log(2.0) - 1,
              1e-6);  // exp(d) - d - 1, d = log .5
  EXPECT_NEAR(k[1].item<float>(), 0.0, 1e-7);
  EXPECT_GE(KlK3(torch::randn({100}), torch::randn({100})).min().item<float>(), 0.0f);
}

TEST(GrpoLossTest, ClippedSurrogateByHand) {
  // ratios 1.5 and 0.6; clip 0.2.
  torch::Tensor logp = Log({0.75f, 0.3f, 0.9f});
  torch::Tensor old = Log({0.5f, 0.5f, 0.1f});
  torch::Tensor mask = torch::tensor({{1.0f, 1.0f, 0.0f}});  // third token is padding
  GrpoOptions o;
  o.kl_coef = 0;
  LossStats st;
  // A > 0: min(1.5, 1.2) = 1.2 and min(0.6, 0.8) = 0.6 -> -(1.2 + 0.6) / 2.
  EXPECT_NEAR(GrpoLoss(logp, old, {}, mask, torch::tensor({1.0f}), o, &st).item<float>(),
              -0.9, 1e-5);
  EXPECT_NEAR(st.clip_fraction, 1.0, 1e-6);
  EXPECT_EQ(st.tokens, 2);
  // A < 0: min(-1.5, -1.2) = -1.5 and min(-0.6, -0.8) = -0.8 -> (1.5 + 0.8) / 2.
  EXPECT_NEAR(
      GrpoLoss(logp, old, {}, mask, torch::tensor({-1.0f}), o, nullptr).item<float>(),
      1.15, 1e-5);
}

TEST(GrpoLossTest, KlTermAndGradient) {
  torch::Tensor logp = Log({0.75f, 0.3f}).requires_grad_(true);
  torch::Tensor old = Log({0.75f, 0.3f});  // on-policy: ratio 1, nothing clipped
  torch::Tensor ref = Log({0.5f, 0.3f});
  torch::Tensor mask = torch::ones({1, 2});
  GrpoOptions o;
  o.kl_coef = 0.1;
  LossStats st;
  torch::Tensor loss = GrpoLoss(logp, old, ref, mask, torch::tensor({2.0f}), o, &st);
  const double k3 = 0.5 / 0.75 - std::log(0.5 / 0.75) - 1;
  EXPECT_NEAR(st.kl, k3 / 2, 1e-6);
  EXPECT_NEAR(loss.item<float>(), -2.0 + 0.1 * k3 / 2, 1e-5);
  loss.backward();
  // d/dlogp of -A * ratio / n = -A / n at ratio 1; k3' = 1 - exp(ref - logp).
  EXPECT_NEAR(logp.grad()[0][0].item<float>(), -1.0 + 0.1 * (1 - 0.5 / 0.75) / 2, 1e-5);
  EXPECT_NEAR(logp.grad()[0][1].item<float>(), -1.0, 1e-5);
}

TEST(SimpoLossTest, LengthNormalisedMarginByHand) {
  // chosen: -2 over 2 tokens (-1/token); rejected: -6 over 3 (-2/token): margin 1.
  SimpoOptions o;
  o.beta = 2.0;
  o.gamma = 1.0;
  LossStats st;
  torch::Tensor loss = SimpoLoss(torch::tensor({-2.0f}), torch::tensor({2.0f}),
                                 torch::tensor({-6.0f}), torch::tensor({3.0f}), o, &st);
  EXPECT_NEAR(loss.item<float>(), std::log1p(std::exp(-1.0)),
              1e-6);  // -log sigmoid(2*1 - 1)
  EXPECT_NEAR(st.margin, 1.0, 1e-6);
}

}  // namespace
}  // namespace duet
