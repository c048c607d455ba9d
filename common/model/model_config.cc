#include "common/model/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace duet {

int64_t ModelConfig::NumParameters() const {
  const int64_t d = head_dim();
  const int64_t attn = hidden_size * (num_attention_heads * d) * 2 +
                       hidden_size * (num_key_value_heads * d) * 2;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t per_layer = attn + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2);
  return num_hidden_layers * per_layer + embed + hidden_size;
}

absl::Status ModelConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) -> absl::Status {
    if (v <= 0)
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", name, " must be positive, got ", v));
    return absl::OkStatus();
  };
  for (auto [name, v] : {std::pair<const char*, int64_t>{"vocab_size", vocab_size},
                         {"hidden_size", hidden_size},
                         {"intermediate_size", intermediate_size},
                         {"num_hidden_layers", num_hidden_layers},
                         {"num_attention_heads", num_attention_heads},
                         {"num_key_value_heads", num_key_value_heads},
                         {"max_position_embeddings", max_position_embeddings}}) {
    absl::Status s = positive(name, v);
    if (!s.ok()) return s;
  }
  if (hidden_size % num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: hidden_size ", hidden_size,
                     " is not divisible by num_attention_heads ", num_attention_heads));
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: num_attention_heads ", num_attention_heads,
                     " is not divisible by num_key_value_heads ", num_key_value_heads));
  }
  if (head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config: head_dim ", head_dim(), " must be even for rotary embeddings"));
  }
  if (!(rms_norm_eps > 0) || !(rope_theta > 0)) {
    return absl::InvalidArgumentError(
        "config: rms_norm_eps and rope_theta must be positive");
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ModelConfig::Preset(const std::string& name,
                                                int64_t vocab_size,
                                                int64_t max_position_embeddings) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.max_position_embeddings = max_position_embeddings;
  if (name == "tiny") {  // ~1M parameters
    c.hidden_size = 128;
    c.intermediate_size = 352;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 4;
  } else if (name == "small") {  // ~25M parameters
    c.hidden_size = 512;
    c.intermediate_size = 1408;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
  } else if (name == "base") {  // ~100M parameters
    c.hidden_size = 768;
    c.intermediate_size = 2560;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 4;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model preset '", name, "' (expected tiny, small or base)"));
  }
  absl::Status s = c.Validate();
  if (!s.ok()) return s;
  return c;
}

std::string ModelConfig::ToJson() const {
  nlohmann::json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  return j.dump(2);
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json is not a JSON object");
  }
  ModelConfig c;
  auto get_int = [&j](const char* key, int64_t* out, bool required) -> absl::Status {
    if (!j.contains(key)) {
      if (required)
        return absl::InvalidArgumentError(
            absl::StrCat("config.json: missing key '", key, "'"));
      return absl::OkStatus();
    }
    if (!j[key].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: '", key, "' must be an integer"));
    }
    *out = j[key].get<int64_t>();
    return absl::OkStatus();
  };
  for (auto [key, out] : {std::pair<const char*, int64_t*>{"vocab_size", &c.vocab_size},
                          {"hidden_size", &c.hidden_size},
                          {"intermediate_size", &c.intermediate_size},
                          {"num_hidden_layers", &c.num_hidden_layers},
                          {"num_attention_heads", &c.num_attention_heads},
                          {"max_position_embeddings", &c.max_position_embeddings}}) {
    absl::Status s = get_int(key, out, /*required=*/true);
    if (!s.ok()) return s;
  }
  c.num_key_value_heads = c.num_attention_heads;
  absl::Status s =
      get_int("num_key_value_heads", &c.num_key_value_heads, /*required=*/false);
  if (!s.ok()) return s;
  auto get_double = [&j](const char* key, double* out) -> absl::Status {
    if (!j.contains(key)) return absl::OkStatus();
    if (!j[key].is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: '", key, "' must be a number"));
    }
    *out = j[key].get<double>();
    return absl::OkStatus();
  };
  if (s = get_double("rms_norm_eps", &c.rms_norm_eps); !s.ok()) return s;
  if (s = get_double("rope_theta", &c.rope_theta); !s.ok()) return s;
  if (j.contains("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean()) {
      return absl::InvalidArgumentError(
          "config.json: 'tie_word_embeddings' must be a boolean");
    }
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (s = c.Validate(); !s.ok()) return s;
  return c;
}

}  // namespace duet
