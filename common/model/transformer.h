#ifndef DUET_COMMON_MODEL_TRANSFORMER_H_
#define DUET_COMMON_MODEL_TRANSFORMER_H_

// A LLaMA-style decoder-only transformer over one unified vocabulary (text, special and
// image tokens): RMSNorm, rotary position embedding in the Hugging Face convention
// (`rotate_half`), SwiGLU MLP, causal multi-head attention with optional grouped-query
// heads. Weights carry Hugging Face LLaMA tensor names.
//
// Storage: q/k/v projections of a layer live in one fused [(nH + 2 nKV) * D, H] tensor
// and gate/up in one [2 I, H] tensor; the Hugging Face names are views into them. The
// fused tensors are the leaves that optimizers update, so inference always sees the
// current weights without any cache to invalidate.
//
// Thread-safety: const methods may run concurrently with each other; anything that
// changes weights (Load*, optimizer steps on parameters()) needs exclusive access.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/model_config.h"
#include "common/model/safetensors.h"

namespace duet {

// Keys and values of every layer for a batch of sequences being decoded.
// Rows are left-padded: row b's real tokens start at column start[b].
struct KvCache {
  std::vector<torch::Tensor> keys;    // per layer [B, nKV, capacity, D]
  std::vector<torch::Tensor> values;  // per layer [B, nKV, capacity, D]
  torch::Tensor start;                // [B] int64: left-padding of each row
  int64_t length = 0;                 // columns filled so far
  int64_t capacity = 0;

  int64_t batch() const { return start.defined() ? start.size(0) : 0; }
};

class Transformer {
 public:
  // A model with freshly initialized weights (normal(0, 0.02), norms at 1), seeded.
  static absl::StatusOr<Transformer> Create(const ModelConfig& config, uint64_t seed);

  // Reads `dir`/config.json and `dir`/model.safetensors. Errors name the problem:
  // DataLoss for a corrupt or truncated file, InvalidArgument for a config that does not
  // match the weights (naming the tensor and both shapes), a missing tensor, an
  // unexpected tensor or an unsupported dtype (F32, F16, BF16 are accepted).
  static absl::StatusOr<Transformer> Load(const std::string& dir);

  // Writes `dir`/config.json and `dir`/model.safetensors (F32), each atomically.
  absl::Status Save(const std::string& dir) const;

  // Copies every weight from `tensors` (Hugging Face names) into this model. Same
  // validation as Load. On error nothing is changed.
  absl::Status LoadTensors(const TensorMap& tensors);
  // Copies of the weights under their Hugging Face names.
  TensorMap StateDict() const;

  const ModelConfig& config() const { return config_; }

  // The leaf tensors an optimizer updates (fused storage). Stable for the model's life.
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  // Turns gradient tracking of every parameter on or off.
  void SetRequiresGrad(bool requires_grad);

  // Teacher-forced forward: logits [B, T, V] for tokens [B, T] (int64, right-padded is
  // fine: causal attention never looks ahead). Validates shapes and token ids
  // (OutOfRange names the first bad id). Records autograd when enabled.
  absl::StatusOr<torch::Tensor> Forward(const torch::Tensor& tokens) const;

  // Empty cache for `start.size(0)` left-padded rows of up to `capacity` tokens.
  // REQUIRES: capacity <= max_position_embeddings + max(start).
  KvCache NewCache(const torch::Tensor& start, int64_t capacity) const;

  // Appends tokens [B, S] to `cache` and returns logits [B, S, V] for them. Row b's
  // position of column c is c - start[b]. Columns before start[b] are never attended.
  // Equal to Forward over the whole sequence (within float noise).
  // REQUIRES: cache.length + S <= cache.capacity, ids in range (unchecked: hot path).
  torch::Tensor Step(const torch::Tensor& tokens, KvCache& cache) const;

  // Unchecked forward used by Forward and the trainers: tokens [B, T]; start [B] or
  // undefined (no left padding).
  torch::Tensor ForwardUnchecked(const torch::Tensor& tokens,
                                 const torch::Tensor& start) const;

 private:
  struct Layer {
    torch::Tensor input_norm;  // [H]
    torch::Tensor qkv;         // [(nH + 2 nKV) * D, H]
    torch::Tensor o;           // [H, nH * D]
    torch::Tensor post_norm;   // [H]
    torch::Tensor gate_up;     // [2 I, H]
    torch::Tensor down;        // [H, I]
  };

  explicit Transformer(const ModelConfig& config);
  void InitStorage();
  // Name -> view into the fused storage, in Hugging Face naming.
  std::vector<std::pair<std::string, torch::Tensor>> NamedViews() const;
  torch::Tensor RunLayers(torch::Tensor x, const torch::Tensor& positions,
                          const torch::Tensor& mask, KvCache* cache, int64_t past) const;

  ModelConfig config_;
  torch::Tensor embed_;    // [V, H]
  torch::Tensor norm_;     // [H]
  torch::Tensor lm_head_;  // [V, H]; aliases embed_ when tied
  std::vector<Layer> layers_;
  std::vector<torch::Tensor> params_;
  torch::Tensor rope_cos_;  // [max_pos, D]
  torch::Tensor rope_sin_;  // [max_pos, D]
};

}  // namespace duet

#endif  // DUET_COMMON_MODEL_TRANSFORMER_H_
