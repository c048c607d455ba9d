#ifndef DUET_COMMON_MODEL_TEST_MODELS_H_
#define DUET_COMMON_MODEL_TEST_MODELS_H_

// Small shapes shared by unit tests: a vocabulary with 16 image codes, 4 per image, and
// captions of at most 5 tokens; a 2-layer, 32-wide model over it.

#include <cstdint>

#include "common/model/model_config.h"
#include "common/model/token_layout.h"

namespace duet::testing {

inline TokenLayout TinyTestLayout() {
  TokenLayout l;
  l.image_end = l.image_begin + 16;
  l.image_tokens = 4;
  l.max_caption_tokens = 5;
  return l;
}

inline ModelConfig TinyTestConfig(int64_t vocab_size, int64_t kv_heads = 2) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = 32;
  return c;
}

}  // namespace duet::testing

#endif  // DUET_COMMON_MODEL_TEST_MODELS_H_
