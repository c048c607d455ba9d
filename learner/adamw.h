#ifndef DUET_LEARNER_ADAMW_H_
#define DUET_LEARNER_ADAMW_H_

// AdamW (decoupled weight decay, Loshchilov & Hutter) over a fixed list of parameter
// tensors, with its state exposed as named tensors so that checkpoints hold it in the
// same safetensors format as the weights.
//
// Thread-safety: not thread-safe; the learner's training thread owns it.

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "common/model/safetensors.h"

namespace duet {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW {
 public:
  // `params` must outlive the optimizer. Parameters of rank < 2 (norm gains) get no
  // weight decay.
  AdamW(std::vector<torch::Tensor> params, AdamWOptions options);

  // One update from the parameters' .grad() at learning rate `lr`; parameters without a
  // gradient are skipped.
  void Step(double lr);
  // Clears every gradient.
  void ZeroGrad();
  // Scales gradients so their global L2 norm is at most `max_norm`; returns the norm
  // before clipping.
  double ClipGradNorm(double max_norm);

  int64_t step() const { return step_; }

  // "adamw.m.<i>", "adamw.v.<i>" and "adamw.step".
  TensorMap State() const;
  // InvalidArgument if a tensor is missing or has the wrong shape; nothing changes then.
  absl::Status LoadState(const TensorMap& state);

 private:
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> m_;  // first moments
  std::vector<torch::Tensor> v_;  // second moments
  AdamWOptions options_;
  int64_t step_ = 0;
};

}  // namespace duet

#endif  // DUET_LEARNER_ADAMW_H_
