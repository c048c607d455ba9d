#include "common/model/generation.h"

#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace duet {
namespace {

// Left-pads rows to one length: returns tokens [B, L] and start [B].
std::pair<torch::Tensor, torch::Tensor> LeftPad(const TokenRows& rows, int64_t pad) {
  size_t len = 0;
  for (const auto& r : rows) len = std::max(len, r.size());
  torch::Tensor tokens = torch::full(
      {static_cast<int64_t>(rows.size()), static_cast<int64_t>(len)}, pad, torch::kInt64);
  torch::Tensor start = torch::empty({static_cast<int64_t>(rows.size())}, torch::kInt64);
  auto t = tokens.accessor<int64_t, 2>();
  auto s = start.accessor<int64_t, 1>();
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t off = len - rows[i].size();
    s[i] = static_cast<int64_t>(off);
    for (size_t j = 0; j < rows[i].size(); ++j) t[i][off + j] = rows[i][j];
  }
  return {tokens, start};
}

torch::Tensor RangeMask(int64_t vocab, int64_t begin, int64_t end) {
  torch::Tensor m = torch::zeros({vocab}, torch::kBool);
  m.narrow(0, begin, end - begin).fill_(true);
  return m;
}

absl::Status CheckSeeds(size_t rows, const std::vector<uint64_t>& seeds) {
  if (seeds.size() != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("seeds: got ", seeds.size(), " seeds for ", rows, " rows"));
  }
  return absl::OkStatus();
}

absl::Status CheckLayout(const Transformer& model, const TokenLayout& layout) {
  if (layout.vocab_size() != model.config().vocab_size) {
    return absl::FailedPreconditionError(
        absl::StrCat("token layout has ", layout.vocab_size(),
                     " ids but the model's vocab_size is ", model.config().vocab_size));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<int64_t> DrawPrompt(const TokenLayout& layout,
                                const std::vector<int64_t>& caption) {
  std::vector<int64_t> out = {layout.bos, layout.draw};
  out.insert(out.end(), caption.begin(), caption.end());
  out.push_back(layout.boi);
  return out;
}

std::vector<int64_t> UnconditionalDrawPrompt(const TokenLayout& layout,
                                             size_t caption_length) {
  std::vector<int64_t> out = {layout.bos, layout.draw};
  out.insert(out.end(), caption_length, layout.pad);
  out.push_back(layout.boi);
  return out;
}

std::vector<int64_t> DescribePrompt(const TokenLayout& layout,
                                    const std::vector<int64_t>& image) {
  std::vector<int64_t> out = {layout.bos, layout.describe, layout.boi};
  out.insert(out.end(), image.begin(), image.end());
  out.push_back(layout.eoi);
  return out;
}

absl::Status ValidateCaptionTokens(const TokenLayout& layout,
                                   const std::vector<int64_t>& caption, size_t row) {
  if (caption.empty() ||
      static_cast<int64_t>(caption.size()) > layout.max_caption_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("caption ", row, ": length ",
                                                   caption.size(), " outside [1, ",
                                                   layout.max_caption_tokens, "]"));
  }
  for (size_t j = 0; j < caption.size(); ++j) {
    if (!layout.IsText(caption[j])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "caption ", row, ": token ", j, " (id ", caption[j], ") is not a text token"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateImageTokens(const TokenLayout& layout,
                                 const std::vector<int64_t>& image, size_t row) {
  if (static_cast<int64_t>(image.size()) != layout.image_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image ", row, ": ", image.size(), " tokens, expected ", layout.image_tokens));
  }
  for (size_t j = 0; j < image.size(); ++j) {
    if (!layout.IsImage(image[j])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", row, ": token ", j, " (id ", image[j], ") is not an image code"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<GeneratedSequences> GenerateImages(const Transformer& model,
                                                  const TokenLayout& layout,
                                                  const TokenRows& captions,
                                                  const std::vector<uint64_t>& seeds,
                                                  const ImageGenerationOptions& options) {
  DUET_RETURN_IF_ERROR(CheckLayout(model, layout));
  DUET_RETURN_IF_ERROR(options.sampling.Validate());
  DUET_RETURN_IF_ERROR(CheckSeeds(captions.size(), seeds));
  if (options.cfg_scale.has_value() && !std::isfinite(*options.cfg_scale)) {
    return absl::InvalidArgumentError("cfg_scale must be finite");
  }
  for (size_t i = 0; i < captions.size(); ++i) {
    DUET_RETURN_IF_ERROR(ValidateCaptionTokens(layout, captions[i], i));
  }
  GeneratedSequences out;
  const int64_t b = static_cast<int64_t>(captions.size());
  if (b == 0) return out;
  try {
    torch::InferenceMode guard;
    const bool cfg = options.cfg_scale.has_value();
    TokenRows prompts;
    for (const auto& c : captions) prompts.push_back(DrawPrompt(layout, c));
    if (cfg) {
      for (const auto& c : captions)
        prompts.push_back(UnconditionalDrawPrompt(layout, c.size()));
    }
    auto [tokens, start] = LeftPad(prompts, layout.pad);
    const int64_t n = layout.image_tokens;
    KvCache cache = model.NewCache(start, tokens.size(1) + n);
    torch::Tensor logits =
        model.Step(tokens, cache).select(1, tokens.size(1) - 1);  // [B', V]
    torch::Tensor allowed =
        RangeMask(layout.vocab_size(), layout.image_begin, layout.image_end);
    torch::Tensor all_tokens = torch::empty({b, n}, torch::kInt64);
    torch::Tensor all_logprobs = torch::empty({b, n}, torch::kFloat32);
    torch::Tensor all_policy = torch::empty({b, n}, torch::kFloat32);
    for (int64_t t = 0; t < n; ++t) {
      torch::Tensor guided = logits;
      torch::Tensor c = logits.narrow(0, 0, b);
      if (cfg) {
        torch::Tensor u = logits.narrow(0, b, b);
        guided = u + *options.cfg_scale * (c - u);
      }
      SampledTokens s = SampleTokens(guided, allowed, options.sampling, seeds, t);
      all_tokens.select(1, t).copy_(s.tokens);
      all_logprobs.select(1, t).copy_(s.logprobs);
      all_policy.select(1, t).copy_(
          torch::log_softmax(c, -1).gather(1, s.tokens.unsqueeze(1)).squeeze(1));
      if (t + 1 == n) break;
      torch::Tensor next = cfg ? torch::cat({s.tokens, s.tokens}) : s.tokens;
      logits = model.Step(next.unsqueeze(1), cache).select(1, 0);
    }
    auto tk = all_tokens.accessor<int64_t, 2>();
    auto lp = all_logprobs.accessor<float, 2>();
    auto pp = all_policy.accessor<float, 2>();
    out.tokens.assign(b, std::vector<int64_t>(n));
    out.logprobs.assign(b, std::vector<float>(n));
    out.policy_logprobs.assign(b, std::vector<float>(n));
    for (int64_t i = 0; i < b; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        out.tokens[i][j] = tk[i][j];
        out.logprobs[i][j] = lp[i][j];
        out.policy_logprobs[i][j] = pp[i][j];
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("GenerateImages: ", e.what_without_backtrace()));
  }
  return out;
}

absl::StatusOr<GeneratedSequences> GenerateCaptions(const Transformer& model,
                                                    const TokenLayout& layout,
                                                    const TokenRows& images,
                                                    const std::vector<uint64_t>& seeds,
                                                    const SamplingParams& sampling) {
  DUET_RETURN_IF_ERROR(CheckLayout(model, layout));
  DUET_RETURN_IF_ERROR(sampling.Validate());
  DUET_RETURN_IF_ERROR(CheckSeeds(images.size(), seeds));
  for (size_t i = 0; i < images.size(); ++i) {
    DUET_RETURN_IF_ERROR(ValidateImageTokens(layout, images[i], i));
  }
  GeneratedSequences out;
  const int64_t b = static_cast<int64_t>(images.size());
  if (b == 0) return out;
  try {
    torch::InferenceMode guard;
    TokenRows prompts;
    for (const auto& im : images) prompts.push_back(DescribePrompt(layout, im));
    auto [tokens, start] = LeftPad(prompts, layout.pad);
    const int64_t max_new = layout.max_caption_tokens + 1;
    KvCache cache = model.NewCache(start, tokens.size(1) + max_new);
    torch::Tensor logits = model.Step(tokens, cache).select(1, tokens.size(1) - 1);
    torch::Tensor text_or_eos =
        RangeMask(layout.vocab_size(), layout.text_begin, layout.text_end);
    text_or_eos[layout.eos] = true;
    torch::Tensor eos_only = RangeMask(layout.vocab_size(), layout.eos, layout.eos + 1);
    out.tokens.assign(b, {});
    out.logprobs.assign(b, {});
    out.policy_logprobs.assign(b, {});
    std::vector<bool> done(b, false);
    int64_t remaining = b;
    for (int64_t t = 0; t < max_new && remaining > 0; ++t) {
      const torch::Tensor& allowed = (t + 1 == max_new) ? eos_only : text_or_eos;
      SampledTokens s = SampleTokens(logits, allowed, sampling, seeds, t);
      torch::Tensor policy =
          torch::log_softmax(logits, -1).gather(1, s.tokens.unsqueeze(1)).squeeze(1);
      auto tk = s.tokens.accessor<int64_t, 1>();
      auto lp = s.logprobs.accessor<float, 1>();
      auto pp = policy.accessor<float, 1>();
      torch::Tensor next = s.tokens.clone();
      for (int64_t i = 0; i < b; ++i) {
        if (done[i]) {
          next[i] = layout.pad;
          continue;
        }
        out.tokens[i].push_back(tk[i]);
        out.logprobs[i].push_back(lp[i]);
        out.policy_logprobs[i].push_back(pp[i]);
        if (tk[i] == layout.eos) {
          done[i] = true;
          --remaining;
        }
      }
      if (remaining == 0) break;
      logits = model.Step(next.unsqueeze(1), cache).select(1, 0);
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("GenerateCaptions: ", e.what_without_backtrace()));
  }
  return out;
}

absl::StatusOr<std::vector<SpanScore>> ScoreSpans(
    const Transformer& model, const TokenLayout& layout, const TokenRows& sequences,
    const std::vector<std::pair<int64_t, int64_t>>& spans) {
  DUET_RETURN_IF_ERROR(CheckLayout(model, layout));
  if (spans.size() != sequences.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ScoreSpans: ", spans.size(), " spans for ", sequences.size(), " sequences"));
  }
  std::vector<SpanScore> out(sequences.size());
  if (sequences.empty()) return out;
  size_t len = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const auto [begin, end] = spans[i];
    const int64_t n = static_cast<int64_t>(sequences[i].size());
    if (begin < 1 || begin >= end || end > n) {
      return absl::InvalidArgumentError(absl::StrCat("ScoreSpans: row ", i, " span [",
                                                     begin, ", ", end,
                                                     ") invalid for length ", n));
    }
    len = std::max(len, sequences[i].size());
  }
  torch::Tensor tokens =
      torch::full({static_cast<int64_t>(sequences.size()), static_cast<int64_t>(len)},
                  layout.pad, torch::kInt64);
  {
    auto t = tokens.accessor<int64_t, 2>();
    for (size_t i = 0; i < sequences.size(); ++i) {
      for (size_t j = 0; j < sequences[i].size(); ++j) t[i][j] = sequences[i][j];
    }
  }
  torch::InferenceMode guard;
  DUET_ASSIGN_OR_RETURN(torch::Tensor logits, model.Forward(tokens));
  // logprob of token j is read from the logits at j - 1.
  torch::Tensor lp = torch::log_softmax(logits.narrow(1, 0, len - 1), -1)
                         .gather(2, tokens.narrow(1, 1, len - 1).unsqueeze(2))
                         .squeeze(2);  // [B, L-1]
  auto a = lp.accessor<float, 2>();
  for (size_t i = 0; i < sequences.size(); ++i) {
    double sum = 0;
    out[i].token_logprobs.reserve(spans[i].second - spans[i].first);
    for (int64_t j = spans[i].first; j < spans[i].second; ++j) {
      sum += a[i][j - 1];
      out[i].token_logprobs.push_back(a[i][j - 1]);
    }
    out[i].count = spans[i].second - spans[i].first;
    out[i].sum_logprob = sum;
    out[i].mean_logprob = sum / static_cast<double>(out[i].count);
  }
  return out;
}

std::vector<int64_t> StripEos(const TokenLayout& layout,
                              const std::vector<int64_t>& tokens) {
  auto it = std::find(tokens.begin(), tokens.end(), layout.eos);
  return std::vector<int64_t>(tokens.begin(), it);
}

}  // namespace duet
