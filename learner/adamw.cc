#include "learner/adamw.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"

namespace duet {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    m_.push_back(torch::zeros_like(p, torch::TensorOptions().requires_grad(false)));
    v_.push_back(torch::zeros_like(p, torch::TensorOptions().requires_grad(false)));
  }
}

void AdamW::ZeroGrad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().reset();
  }
}

double AdamW::ClipGradNorm(double max_norm) {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (const auto& p : params_) {
    if (p.grad().defined()) total += p.grad().pow(2).sum().item<double>();
  }
  const double norm = std::sqrt(total);
  if (norm > max_norm && norm > 0) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& p : params_) {
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
    }
  }
  return norm;
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(b2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i];
    if (!p.grad().defined()) continue;
    const torch::Tensor& g = p.grad();
    m_[i].mul_(b1).add_(g, 1 - b1);
    v_[i].mul_(b2).addcmul_(g, g, 1 - b2);
    if (options_.weight_decay > 0 && p.dim() >= 2) p.mul_(1 - lr * options_.weight_decay);
    torch::Tensor denom = (v_[i] / bc2).sqrt_().add_(options_.eps);
    p.addcdiv_(m_[i], denom, -lr / bc1);
  }
}

TensorMap AdamW::State() const {
  TensorMap out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out[absl::StrCat("adamw.m.", i)] = m_[i];
    out[absl::StrCat("adamw.v.", i)] = v_[i];
  }
  out["adamw.step"] = torch::tensor({step_}, torch::kInt64);
  return out;
}

absl::Status AdamW::LoadState(const TensorMap& state) {
  auto find = [&state](const std::string& name,
                       at::IntArrayRef shape) -> absl::StatusOr<torch::Tensor> {
    auto it = state.find(name);
    if (it == state.end())
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state: missing '", name, "'"));
    if (it->second.sizes() != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state: '", name, "' has the wrong shape"));
    }
    return it->second;
  };
  std::vector<torch::Tensor> m, v;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto mi = find(absl::StrCat("adamw.m.", i), params_[i].sizes());
    if (!mi.ok()) return mi.status();
    auto vi = find(absl::StrCat("adamw.v.", i), params_[i].sizes());
    if (!vi.ok()) return vi.status();
    m.push_back(*mi);
    v.push_back(*vi);
  }
  auto st = find("adamw.step", {1});
  if (!st.ok()) return st.status();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i].copy_(m[i]);
    v_[i].copy_(v[i]);
  }
  step_ = st->to(torch::kInt64).item<int64_t>();
  return absl::OkStatus();
}

}  // namespace duet
