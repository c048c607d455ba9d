#ifndef DUET_COMMON_MODEL_MODEL_CONFIG_H_
#define DUET_COMMON_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace duet {

// Shape of a LLaMA-style decoder. Serialized as `config.json` with the Hugging Face
// LLaMA key names (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, max_position_embeddings, rms_norm_eps,
// rope_theta, tie_word_embeddings), so a checkpoint of that family can be read.
struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Number of parameters the weights of this shape hold.
  int64_t NumParameters() const;

  // InvalidArgument naming the first inconsistent field (non-positive sizes, hidden size
  // not divisible by heads, heads not divisible by kv heads, odd head_dim for RoPE).
  absl::Status Validate() const;

  // Named presets: "tiny" (~1M parameters, the default), "small" (~25M), "base" (~100M).
  // InvalidArgument for an unknown name.
  static absl::StatusOr<ModelConfig> Preset(const std::string& name, int64_t vocab_size,
                                            int64_t max_position_embeddings);

  // Hugging Face `config.json` text (also records model_type "llama" and architectures).
  std::string ToJson() const;
  // Parses and validates `config.json` text; InvalidArgument naming a missing or
  // mistyped key.
  static absl::StatusOr<ModelConfig> FromJson(const std::string& text);
};

}  // namespace duet

#endif  // DUET_COMMON_MODEL_MODEL_CONFIG_H_
