#include "learner/adamw.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace duet {
namespace {

// f(p) = 0.5 * sum((p - c)^2) for every parameter: gradient p - c.
void QuadraticBackward(const std::vector<torch::Tensor>& params,
                       const std::vector<torch::Tensor>& centers) {
  torch::Tensor loss = torch::scalar_tensor(0.0, torch::kFloat64);
  for (size_t i = 0; i < params.size(); ++i)
    loss = loss + 0.5 * (params[i] - centers[i]).pow(2).sum();
  loss.backward();
}

torch::Tensor Leaf(std::vector<double> values, std::vector<int64_t> shape) {
  return torch::tensor(values, torch::kFloat64).reshape(shape).requires_grad_(true);
}

// A rank-2 parameter (decayed) and a rank-1 one (a norm gain: never decayed).
struct Problem {
  std::vector<torch::Tensor> params = {Leaf({1.0, -2.0, 0.5, 3.0}, {2, 2}),
                                       Leaf({0.25, -0.75}, {2})};
  std::vector<torch::Tensor> centers = {
      torch::tensor({0.0, 1.0, 2.0, -1.0}, torch::kFloat64).reshape({2, 2}),
      torch::tensor({1.0, 1.0}, torch::kFloat64)};
};

TEST(AdamWTest, FirstStepMatchesTheFormulaByHand) {
  Problem pr;
  AdamWOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  const double lr = 0.01;
  const std::vector<torch::Tensor> before = {pr.params[0].detach().clone(),
                                             pr.params[1].detach().clone()};
  AdamW opt(pr.params, o);
  QuadraticBackward(pr.params, pr.centers);
  opt.Step(lr);
  EXPECT_EQ(opt.step(), 1);

  for (size_t i = 0; i < pr.params.size(); ++i) {
    auto p0 = before[i].flatten();
    auto c = pr.centers[i].flatten();
    auto p1 = pr.params[i].detach().flatten();
    const bool decayed = pr.params[i].dim() >= 2;
    for (int64_t j = 0; j < p0.numel(); ++j) {
      const double x = p0[j].item<double>();
      const double g = x - c[j].item<double>();
      // Step 1: m = (1 - b1) g, v = (1 - b2) g^2; bias-corrected m_hat = g, v_hat = g^2.
      const double m_hat = ((1 - o.beta1) * g) / (1 - o.beta1);
      const double v_hat = ((1 - o.beta2) * g * g) / (1 - o.beta2);
      const double decay = decayed ? 1 - lr * o.weight_decay : 1.0;
      const double expected = x * decay - lr * m_hat / (std::sqrt(v_hat) + o.eps);
      EXPECT_NEAR(p1[j].item<double>(), expected, 1e-12)
          << "param " << i << " entry " << j;
      // With bias correction the first step moves each entry by lr against its gradient's
      // sign.
      EXPECT_NEAR(p1[j].item<double>(), x * decay - lr * (g > 0 ? 1 : -1), 1e-8);
    }
  }
}

TEST(AdamWTest, SeveralStepsMatchTheFormulaByHand) {
  Problem pr;
  AdamWOptions o;
  o.weight_decay = 0.05;
  const std::vector<double> lrs = {0.1, 0.05, 0.02, 0.02};
  AdamW opt(pr.params, o);

  // The reference in plain doubles.
  std::vector<std::vector<double>> x, c, m, v;
  for (size_t i = 0; i < pr.params.size(); ++i) {
    auto p = pr.params[i].detach().flatten();
    auto ci = pr.centers[i].flatten();
    x.emplace_back(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    c.emplace_back(ci.data_ptr<double>(), ci.data_ptr<double>() + ci.numel());
    m.emplace_back(p.numel(), 0.0);
    v.emplace_back(p.numel(), 0.0);
  }
  for (size_t t = 1; t <= lrs.size(); ++t) {
    const double lr = lrs[t - 1];
    opt.ZeroGrad();
    QuadraticBackward(pr.params, pr.centers);
    opt.Step(lr);
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    for (size_t i = 0; i < x.size(); ++i) {
      const bool decayed = pr.params[i].dim() >= 2;
      for (size_t j = 0; j < x[i].size(); ++j) {
        const double g = x[i][j] - c[i][j];
        m[i][j] = o.beta1 * m[i][j] + (1 - o.beta1) * g;
        v[i][j] = o.beta2 * v[i][j] + (1 - o.beta2) * g * g;
        if (decayed) x[i][j] *= 1 - lr * o.weight_decay;  // decoupled: not part of g
        x[i][j] -= lr * (m[i][j] / bc1) / (std::sqrt(v[i][j] / bc2) + o.eps);
      }
    }
  }
  EXPECT_EQ(opt.step(), static_cast<int64_t>(lrs.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    auto p = pr.params[i].detach().flatten();
    for (size_t j = 0; j < x[i].size(); ++j) {
      EXPECT_NEAR(p[j].item<double>(), x[i][j], 1e-12) << "param " << i << " entry " << j;
    }
  }
}

TEST(AdamWTest, ParametersWithoutGradientAreSkipped) {
  torch::Tensor a = Leaf({1.0, 2.0, 3.0, 4.0}, {2, 2});
  torch::Tensor b = Leaf({5.0, 6.0, 7.0, 8.0}, {2, 2});
  AdamW opt({a, b}, AdamWOptions{});
  (a * a).sum().backward();  // only `a` gets a gradient
  const torch::Tensor b_before = b.detach().clone();
  opt.Step(0.1);
  EXPECT_TRUE(torch::equal(b.detach(), b_before));  // not even weight decay
  EXPECT_FALSE(torch::equal(
      a.detach(), torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kFloat64).reshape({2, 2})));
}

TEST(AdamWTest, ZeroGradClearsAndClipGradNormScales) {
  torch::Tensor a = Leaf({0.0, 0.0}, {2});
  torch::Tensor b = Leaf({0.0, 0.0, 0.0, 0.0}, {2, 2});
  AdamW opt({a, b}, AdamWOptions{});
  // Gradients (3, 0) and (0, 4, 0, 0): global norm 5.
  ((a * torch::tensor({3.0, 0.0}, torch::kFloat64)).sum() +
   (b * torch::tensor({0.0, 4.0, 0.0, 0.0}, torch::kFloat64).reshape({2, 2})).sum())
      .backward();
  EXPECT_NEAR(opt.ClipGradNorm(10.0), 5.0, 1e-12);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0, 1e-12);  // under the bound: unchanged
  EXPECT_NEAR(opt.ClipGradNorm(1.0), 5.0, 1e-12);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-6);
  EXPECT_NEAR(b.grad()[0][1].item<double>(), 0.8, 1e-6);
  opt.ZeroGrad();
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(AdamWTest, StateRoundTripContinuesIdentically) {
  Problem original;
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW a(original.params, o);
  for (int t = 0; t < 3; ++t) {
    a.ZeroGrad();
    QuadraticBackward(original.params, original.centers);
    a.Step(0.05);
  }

  // A second optimizer over copies of the parameters, restored from the first's state.
  std::vector<torch::Tensor> copies, fresh_copies;
  for (const auto& p : original.params) {
    copies.push_back(p.detach().clone().requires_grad_(true));
    fresh_copies.push_back(p.detach().clone().requires_grad_(true));
  }
  const TensorMap state = a.State();
  EXPECT_EQ(state.size(), 2 * original.params.size() + 1);
  ASSERT_EQ(state.count("adamw.step"), 1u);
  EXPECT_EQ(state.at("adamw.step").item<int64_t>(), 3);
  AdamW b(copies, o);
  ASSERT_TRUE(b.LoadState(state).ok());
  EXPECT_EQ(b.step(), 3);
  AdamW fresh(fresh_copies, o);  // the same parameters without the state

  for (int t = 0; t < 3; ++t) {
    for (AdamW* opt : {&a, &b, &fresh}) opt->ZeroGrad();
    QuadraticBackward(original.params, original.centers);
    QuadraticBackward(copies, original.centers);
    QuadraticBackward(fresh_copies, original.centers);
    a.Step(0.05);
    b.Step(0.05);
    fresh.Step(0.05);
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    EXPECT_TRUE(torch::equal(copies[i].detach(), original.params[i].detach())) << i;
    // Without the moments and the step count the trajectory differs.
    EXPECT_FALSE(torch::allclose(fresh_copies[i].detach(), original.params[i].detach(),
                                 1e-9, 1e-9))
        << i;
  }
  EXPECT_EQ(b.step(), a.step());
  for (const auto& [name, t] : a.State())
    EXPECT_TRUE(torch::equal(t, b.State().at(name))) << name;
}

TEST(AdamWTest, LoadStateWithMismatchedShapesIsAnErrorAndChangesNothing) {
  Problem pr;
  AdamW a(pr.params, AdamWOptions{});
  QuadraticBackward(pr.params, pr.centers);
  a.Step(0.1);
  const TensorMap good = a.State();

  // Another optimizer's state over differently shaped parameters.
  std::vector<torch::Tensor> other = {Leaf({1.0, 2.0, 3.0}, {3}), Leaf({1.0, 2.0}, {2})};
  AdamW b(other, AdamWOptions{});
  absl::Status s = b.LoadState(good);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(b.step(), 0);
  for (const auto& [name, t] : b.State()) {
    if (name != "adamw.step") EXPECT_EQ(t.abs().sum().item<double>(), 0.0) << name;
  }

  // One mismatched tensor among good ones: nothing is loaded, not even the good ones.
  Problem pr2;
  AdamW c(pr2.params, AdamWOptions{});
  TensorMap bad = good;
  bad["adamw.v.1"] = torch::zeros({3}, torch::kFloat64);
  s = c.LoadState(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("adamw.v.1"), std::string::npos) << s;
  EXPECT_EQ(c.step(), 0);
  EXPECT_EQ(c.State().at("adamw.m.0").abs().sum().item<double>(), 0.0);

  // A missing tensor is also refused.
  TensorMap missing = good;
  missing.erase("adamw.step");
  EXPECT_EQ(c.LoadState(missing).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.step(), 0);
}

}  // namespace
}  // namespace duet
