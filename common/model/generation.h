#ifndef DUET_COMMON_MODEL_GENERATION_H_
#define DUET_COMMON_MODEL_GENERATION_H_

// The sequence templates of both directions and the batched operations every role needs:
// constrained, KV-cached sampling of images (with classifier-free guidance) and of
// captions, and teacher-forced span scoring.
//
//   draw (text -> image):     <bos> <draw> caption... <boi> code x36 <eoi>
//   describe (image -> text): <bos> <describe> <boi> code x36 <eoi> caption... <eos>
//
// Thread-safety: free functions; they only read the model.

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/sampling.h"
#include "common/model/token_layout.h"
#include "common/model/transformer.h"

namespace duet {

using TokenRows = std::vector<std::vector<int64_t>>;

// <bos> <draw> caption <boi>.
std::vector<int64_t> DrawPrompt(const TokenLayout& layout,
                                const std::vector<int64_t>& caption);
// The unconditional row of classifier-free guidance: the caption replaced by <pad>s.
std::vector<int64_t> UnconditionalDrawPrompt(const TokenLayout& layout,
                                             size_t caption_length);
// <bos> <describe> <boi> image <eoi>.
std::vector<int64_t> DescribePrompt(const TokenLayout& layout,
                                    const std::vector<int64_t>& image);

// Checks that `caption` holds 1..max_caption_tokens text ids (InvalidArgument naming the
// row and position otherwise) and `image` exactly image_tokens image ids.
absl::Status ValidateCaptionTokens(const TokenLayout& layout,
                                   const std::vector<int64_t>& caption, size_t row);
absl::Status ValidateImageTokens(const TokenLayout& layout,
                                 const std::vector<int64_t>& image, size_t row);

struct ImageGenerationOptions {
  SamplingParams sampling;
  // Classifier-free guidance scale s: guided logits u + s * (c - u), with conditional and
  // unconditional rows in one batch. nullopt samples from the conditional logits alone.
  std::optional<double> cfg_scale;
};

struct GeneratedSequences {
  TokenRows tokens;                          // sampled ids per row
  std::vector<std::vector<float>> logprobs;  // per sampled token, under the distribution
                                             // it was drawn from (guidance, temperature,
                                             // top-k/p and the token constraints applied)
  // Per sampled token, log-softmax of the model's own conditional logits (temperature 1,
  // no guidance, full vocabulary): what a teacher-forced pass of the same weights gives,
  // so a learner can form importance ratios and check consistency against it.
  std::vector<std::vector<float>> policy_logprobs;
};

// Samples exactly layout.image_tokens image codes for each caption (text ids), with
// seeds[i] for row i. Only image codes can be drawn. The result rows hold image token
// ids (the <eoi> that follows is implied).
absl::StatusOr<GeneratedSequences> GenerateImages(const Transformer& model,
                                                  const TokenLayout& layout,
                                                  const TokenRows& captions,
                                                  const std::vector<uint64_t>& seeds,
                                                  const ImageGenerationOptions& options);

// Samples a caption for each image (image token ids): only text tokens and <eos> can be
// drawn, <eos> is forced after layout.max_caption_tokens. Result rows hold the caption's
// text ids followed by <eos>.
absl::StatusOr<GeneratedSequences> GenerateCaptions(const Transformer& model,
                                                    const TokenLayout& layout,
                                                    const TokenRows& images,
                                                    const std::vector<uint64_t>& seeds,
                                                    const SamplingParams& sampling);

struct SpanScore {
  double sum_logprob = 0;
  double mean_logprob = 0;
  int64_t count = 0;
  // The log-probability of each span token, in order (count entries); sum_logprob is
  // their sum, accumulated in double.
  std::vector<float> token_logprobs;
};

// One batched teacher-forced pass: for row i, the log-probability of tokens
// sequences[i][span.first, span.second) given everything before them.
// REQUIRES (checked, InvalidArgument): 1 <= span.first < span.second <= row length.
absl::StatusOr<std::vector<SpanScore>> ScoreSpans(
    const Transformer& model, const TokenLayout& layout, const TokenRows& sequences,
    const std::vector<std::pair<int64_t, int64_t>>& spans);

// Strips a trailing <eos> (and anything after it).
std::vector<int64_t> StripEos(const TokenLayout& layout,
                              const std::vector<int64_t>& tokens);

}  // namespace duet

#endif  // DUET_COMMON_MODEL_GENERATION_H_
