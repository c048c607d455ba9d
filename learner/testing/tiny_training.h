#ifndef DUET_LEARNER_TESTING_TINY_TRAINING_H_
#define DUET_LEARNER_TESTING_TINY_TRAINING_H_

// Test helpers shared by the learner's tests and its service's (checkpoint_test,
// run_state_test): a tiny transformer and one optimizer step that moves its weights and
// the optimizer's state. Test code only.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <utility>

#include "common/model/test_models.h"
#include "common/model/transformer.h"
#include "learner/adamw.h"

namespace duet::testing {

// A tiny test transformer (TinyTestConfig) with weights drawn from `seed`.
inline Transformer TinyModel(uint64_t seed) {
  auto m = Transformer::Create(TinyTestConfig(TinyTestLayout().vocab_size()), seed);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

// One AdamW step (lr 1e-2) on the sum of every parameter's square, so that the weights
// and the optimizer's state move; gradients are left cleared and off.
inline void TrainOneStep(Transformer& model, AdamW& opt) {
  model.SetRequiresGrad(true);
  opt.ZeroGrad();
  torch::Tensor loss = torch::scalar_tensor(0.0);
  for (const auto& p : model.parameters()) loss = loss + (p * p).sum();
  loss.backward();
  opt.Step(1e-2);
  opt.ZeroGrad();
  model.SetRequiresGrad(false);
}

}  // namespace duet::testing

#endif  // DUET_LEARNER_TESTING_TINY_TRAINING_H_
