#include "common/model/transformer.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {
namespace {

torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// Hugging Face LLaMA rotary embedding: x * cos + rotate_half(x) * sin, where
// rotate_half(x) = cat(-x2, x1) over the two halves of the head dimension.
torch::Tensor ApplyRope(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  torch::Tensor x1 = x.narrow(-1, 0, half);
  torch::Tensor x2 = x.narrow(-1, half, half);
  return x * cos + torch::cat({-x2, x1}, -1) * sin;
}

std::string ShapeString(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
  return out + "]";
}

}  // namespace

Transformer::Transformer(const ModelConfig& config) : config_(config) {}

void Transformer::InitStorage() {
  const auto& c = config_;
  const int64_t d = c.head_dim();
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  embed_ = torch::empty({c.vocab_size, c.hidden_size}, opts);
  norm_ = torch::ones({c.hidden_size}, opts);
  lm_head_ =
      c.tie_word_embeddings ? embed_ : torch::empty({c.vocab_size, c.hidden_size}, opts);
  layers_.clear();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    Layer l;
    l.input_norm = torch::ones({c.hidden_size}, opts);
    l.qkv = torch::empty(
        {(c.num_attention_heads + 2 * c.num_key_value_heads) * d, c.hidden_size}, opts);
    l.o = torch::empty({c.hidden_size, c.num_attention_heads * d}, opts);
    l.post_norm = torch::ones({c.hidden_size}, opts);
    l.gate_up = torch::empty({2 * c.intermediate_size, c.hidden_size}, opts);
    l.down = torch::empty({c.hidden_size, c.intermediate_size}, opts);
    layers_.push_back(l);
  }
  params_.clear();
  params_.push_back(embed_);
  for (const Layer& l : layers_) {
    for (const auto& t : {l.input_norm, l.qkv, l.o, l.post_norm, l.gate_up, l.down})
      params_.push_back(t);
  }
  params_.push_back(norm_);
  if (!c.tie_word_embeddings) params_.push_back(lm_head_);

  // Rotary tables: inv_freq = theta^(-2i/D); emb = cat(freqs, freqs).
  torch::Tensor inv_freq = torch::pow(
      c.rope_theta, -torch::arange(0, d, 2, torch::kFloat64) / static_cast<double>(d));
  torch::Tensor t = torch::arange(c.max_position_embeddings, torch::kFloat64);
  torch::Tensor freqs = torch::outer(t, inv_freq);
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  rope_cos_ = emb.cos().to(torch::kFloat32);
  rope_sin_ = emb.sin().to(torch::kFloat32);
}

std::vector<std::pair<std::string, torch::Tensor>> Transformer::NamedViews() const {
  const auto& c = config_;
  const int64_t d = c.head_dim();
  const int64_t q = c.num_attention_heads * d, kv = c.num_key_value_heads * d;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    out.emplace_back(p + "input_layernorm.weight", l.input_norm);
    out.emplace_back(p + "self_attn.q_proj.weight", l.qkv.narrow(0, 0, q));
    out.emplace_back(p + "self_attn.k_proj.weight", l.qkv.narrow(0, q, kv));
    out.emplace_back(p + "self_attn.v_proj.weight", l.qkv.narrow(0, q + kv, kv));
    out.emplace_back(p + "self_attn.o_proj.weight", l.o);
    out.emplace_back(p + "post_attention_layernorm.weight", l.post_norm);
    out.emplace_back(p + "mlp.gate_proj.weight",
                     l.gate_up.narrow(0, 0, c.intermediate_size));
    out.emplace_back(p + "mlp.up_proj.weight",
                     l.gate_up.narrow(0, c.intermediate_size, c.intermediate_size));
    out.emplace_back(p + "mlp.down_proj.weight", l.down);
  }
  out.emplace_back("model.norm.weight", norm_);
  if (!c.tie_word_embeddings) out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

absl::StatusOr<Transformer> Transformer::Create(const ModelConfig& config,
                                                uint64_t seed) {
  DUET_RETURN_IF_ERROR(config.Validate());
  Transformer m(config);
  m.InitStorage();
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  const double std = 0.02;
  const double out_std = std / std::sqrt(2.0 * config.num_hidden_layers);
  m.embed_.normal_(0.0, std, gen);
  if (!config.tie_word_embeddings) m.lm_head_.normal_(0.0, std, gen);
  for (Layer& l : m.layers_) {
    l.qkv.normal_(0.0, std, gen);
    l.o.normal_(0.0, out_std, gen);
    l.gate_up.normal_(0.0, std, gen);
    l.down.normal_(0.0, out_std, gen);
  }
  return m;
}

absl::Status Transformer::LoadTensors(const TensorMap& tensors) {
  auto views = NamedViews();
  std::set<std::string> expected;
  std::vector<torch::Tensor> sources;
  for (const auto& [name, view] : views) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: missing tensor '", name, "'"));
    }
    const torch::Tensor& t = it->second;
    const auto st = t.scalar_type();
    if (st != torch::kFloat32 && st != torch::kFloat16 && st != torch::kBFloat16) {
      return absl::InvalidArgumentError(absl::StrCat("weights: tensor '", name,
                                                     "' has dtype ", c10::toString(st),
                                                     "; expected F32, F16 or BF16"));
    }
    if (t.sizes() != view.sizes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: tensor '", name, "' has shape ", ShapeString(t.sizes()),
                       " but config.json implies ", ShapeString(view.sizes())));
    }
    sources.push_back(t);
  }
  for (const auto& [name, t] : tensors) {
    if (expected.count(name) == 0 && !absl::EndsWith(name, "rotary_emb.inv_freq") &&
        !(config_.tie_word_embeddings && name == "lm_head.weight")) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights: unexpected tensor '", name, "' (config.json has ",
                       config_.num_hidden_layers, " layers)"));
    }
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < views.size(); ++i) views[i].second.copy_(sources[i]);
  return absl::OkStatus();
}

TensorMap Transformer::StateDict() const {
  TensorMap out;
  torch::NoGradGuard no_grad;
  for (const auto& [name, view] : NamedViews()) out[name] = view.detach().clone();
  return out;
}

absl::StatusOr<Transformer> Transformer::Load(const std::string& dir) {
  DUET_ASSIGN_OR_RETURN(std::string config_text,
                        ReadFileToString(JoinPath(dir, "config.json")));
  DUET_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromJson(config_text));
  DUET_ASSIGN_OR_RETURN(SafetensorsFile file,
                        ReadSafetensors(JoinPath(dir, "model.safetensors")));
  Transformer m(config);
  m.InitStorage();
  DUET_RETURN_IF_ERROR(m.LoadTensors(file.tensors));
  return m;
}

absl::Status Transformer::Save(const std::string& dir) const {
  DUET_RETURN_IF_ERROR(MakeDirs(dir));
  DUET_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(dir, "config.json"), config_.ToJson()));
  TensorMap tensors;
  for (const auto& [name, view] : NamedViews()) tensors[name] = view.detach();
  return WriteSafetensors(JoinPath(dir, "model.safetensors"), tensors,
                          {{"format", "pt"}, {"producer", "duet"}});
}

void Transformer::SetRequiresGrad(bool requires_grad) {
  for (auto& p : params_) p.requires_grad_(requires_grad);
}

absl::StatusOr<torch::Tensor> Transformer::Forward(const torch::Tensor& tokens) const {
  if (tokens.dim() != 2 || tokens.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError(
        "Forward: tokens must be a 2-D int64 tensor [B, T]");
  }
  if (tokens.size(1) > config_.max_position_embeddings || tokens.size(1) == 0) {
    return absl::OutOfRangeError(absl::StrCat(
        "Forward: sequence length ", tokens.size(1),
        " outside [1, max_position_embeddings=", config_.max_position_embeddings, "]"));
  }
  if (tokens.numel() > 0) {
    const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size) {
      return absl::OutOfRangeError(absl::StrCat("Forward: token id ", lo < 0 ? lo : hi,
                                                " outside the vocabulary [0, ",
                                                config_.vocab_size, ")"));
    }
  }
  try {
    return ForwardUnchecked(tokens, torch::Tensor());
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("Forward: ", e.what_without_backtrace()));
  }
}

torch::Tensor Transformer::ForwardUnchecked(const torch::Tensor& tokens,
                                            const torch::Tensor& start) const {
  const int64_t b = tokens.size(0), t = tokens.size(1);
  torch::Tensor st = start.defined() ? start : torch::zeros({b}, torch::kInt64);
  torch::Tensor idx = torch::arange(t, torch::kInt64);
  torch::Tensor positions = (idx.unsqueeze(0) - st.unsqueeze(1)).clamp_min(0);  // [B, T]
  // valid[b, i, j]: key j visible to query i: causal, not left padding (a padding query
  // sees itself so that its softmax stays finite).
  torch::Tensor causal = idx.unsqueeze(0) <= idx.unsqueeze(1);  // [T, T]
  torch::Tensor not_pad = idx.unsqueeze(0) >= st.unsqueeze(1);  // [B, T]
  torch::Tensor valid = (causal.unsqueeze(0) & not_pad.unsqueeze(1)) |
                        torch::eye(t, torch::kBool).unsqueeze(0);
  torch::Tensor x = torch::embedding(embed_, tokens);
  x = RunLayers(x, positions, valid, /*cache=*/nullptr, /*past=*/0);
  return torch::linear(RmsNorm(x, norm_, config_.rms_norm_eps), lm_head_);
}

KvCache Transformer::NewCache(const torch::Tensor& start, int64_t capacity) const {
  KvCache cache;
  const int64_t b = start.size(0);
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    cache.keys.push_back(torch::empty(
        {b, config_.num_key_value_heads, capacity, config_.head_dim()}, opts));
    cache.values.push_back(torch::empty(
        {b, config_.num_key_value_heads, capacity, config_.head_dim()}, opts));
  }
  cache.start = start.to(torch::kInt64).contiguous();
  cache.capacity = capacity;
  cache.length = 0;
  return cache;
}

torch::Tensor Transformer::Step(const torch::Tensor& tokens, KvCache& cache) const {
  const int64_t s = tokens.size(1);
  const int64_t past = cache.length;
  torch::Tensor q_idx = torch::arange(past, past + s, torch::kInt64);  // [S]
  torch::Tensor k_idx = torch::arange(past + s, torch::kInt64);        // [Tk]
  torch::Tensor positions = (q_idx.unsqueeze(0) - cache.start.unsqueeze(1)).clamp_min(0);
  torch::Tensor causal = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1);         // [S, Tk]
  torch::Tensor not_pad = k_idx.unsqueeze(0) >= cache.start.unsqueeze(1);  // [B, Tk]
  torch::Tensor self = k_idx.unsqueeze(0) == q_idx.unsqueeze(1);           // [S, Tk]
  torch::Tensor valid = (causal.unsqueeze(0) & not_pad.unsqueeze(1)) | self.unsqueeze(0);
  torch::Tensor x = torch::embedding(embed_, tokens);
  x = RunLayers(x, positions, valid, &cache, past);
  cache.length = past + s;
  return torch::linear(RmsNorm(x, norm_, config_.rms_norm_eps), lm_head_);
}

torch::Tensor Transformer::RunLayers(torch::Tensor x, const torch::Tensor& positions,
                                     const torch::Tensor& valid, KvCache* cache,
                                     int64_t past) const {
  const auto& c = config_;
  const int64_t b = x.size(0), s = x.size(1);
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads, d = c.head_dim();
  const int64_t g = nh / nkv;
  const int64_t tk = valid.size(2);
  // [B, 1, S, D] rotary tables gathered at each row's positions.
  torch::Tensor cos = rope_cos_.index_select(0, positions.reshape(-1)).view({b, 1, s, d});
  torch::Tensor sin = rope_sin_.index_select(0, positions.reshape(-1)).view({b, 1, s, d});
  // Additive mask [B, 1, 1, S, Tk].
  torch::Tensor mask =
      torch::zeros({b, s, tk}, torch::kFloat32)
          .masked_fill_(valid.logical_not(), -std::numeric_limits<float>::infinity())
          .view({b, 1, 1, s, tk});
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    torch::Tensor h = RmsNorm(x, l.input_norm, c.rms_norm_eps);
    torch::Tensor qkv = torch::linear(h, l.qkv);  // [B, S, (nh + 2 nkv) d]
    torch::Tensor q = qkv.narrow(-1, 0, nh * d).view({b, s, nh, d}).transpose(1, 2);
    torch::Tensor k =
        qkv.narrow(-1, nh * d, nkv * d).view({b, s, nkv, d}).transpose(1, 2);
    torch::Tensor v =
        qkv.narrow(-1, (nh + nkv) * d, nkv * d).view({b, s, nkv, d}).transpose(1, 2);
    q = ApplyRope(q, cos, sin) * scale;  // [B, nh, S, d]
    k = ApplyRope(k, cos, sin);          // [B, nkv, S, d]
    if (cache != nullptr) {
      cache->keys[li].narrow(2, past, s).copy_(k);
      cache->values[li].narrow(2, past, s).copy_(v);
      k = cache->keys[li].narrow(2, 0, past + s);
      v = cache->values[li].narrow(2, 0, past + s);
    }
    // Grouped-query attention without repeating k/v: heads of one kv group share a GEMM.
    torch::Tensor qg = q.reshape({b, nkv, g * s, d});
    torch::Tensor scores =
        torch::matmul(qg, k.transpose(2, 3)).view({b, nkv, g, s, tk}) + mask;
    torch::Tensor probs = torch::softmax(scores, -1).view({b, nkv, g * s, tk});
    torch::Tensor attn = torch::matmul(probs, v)  // [B, nkv, g*s, d]
                             .view({b, nh, s, d})
                             .transpose(1, 2)
                             .reshape({b, s, nh * d});
    x = x + torch::linear(attn, l.o);
    h = RmsNorm(x, l.post_norm, c.rms_norm_eps);
    torch::Tensor gu = torch::linear(h, l.gate_up);
    torch::Tensor gate = gu.narrow(-1, 0, c.intermediate_size);
    torch::Tensor up = gu.narrow(-1, c.intermediate_size, c.intermediate_size);
    x = x + torch::linear(torch::silu(gate) * up, l.down);
  }
  return x;
}

}  // namespace duet
