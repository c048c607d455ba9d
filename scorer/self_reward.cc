#include "scorer/self_reward.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace duet {

absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>> ReversedSequence(
    const TokenLayout& layout, const RewardQuery& q) {
  if (q.task == Task::kGeneration) {
    // Image given, prompt scored.
    DUET_RETURN_IF_ERROR(ValidateImageTokens(layout, q.output, 0));
    DUET_RETURN_IF_ERROR(ValidateCaptionTokens(layout, q.input, 0));
    std::vector<int64_t> seq = DescribePrompt(layout, q.output);
    const int64_t begin = static_cast<int64_t>(seq.size());
    seq.insert(seq.end(), q.input.begin(), q.input.end());
    seq.push_back(layout.eos);
    return std::make_pair(seq, std::make_pair(begin, static_cast<int64_t>(seq.size())));
  }
  // Caption given, image scored.
  std::vector<int64_t> caption = StripEos(layout, q.output);
  DUET_RETURN_IF_ERROR(ValidateImageTokens(layout, q.input, 0));
  if (caption.empty()) {
    // An empty caption still conditions the image: "<bos> <draw> <boi>".
  } else {
    DUET_RETURN_IF_ERROR(ValidateCaptionTokens(layout, caption, 0));
  }
  std::vector<int64_t> seq = DrawPrompt(layout, caption);
  const int64_t begin = static_cast<int64_t>(seq.size());
  seq.insert(seq.end(), q.input.begin(), q.input.end());
  return std::make_pair(seq, std::make_pair(begin, static_cast<int64_t>(seq.size())));
}

absl::StatusOr<std::vector<double>> ComputeSelfRewards(const Transformer& model,
                                                       const TokenLayout& layout,
                                                       const std::vector<RewardQuery>& queries,
                                                       int64_t max_batch) {
  std::vector<double> rewards;
  rewards.reserve(queries.size());
  for (size_t begin = 0; begin < queries.size(); begin += std::max<int64_t>(1, max_batch)) {
    const size_t end = std::min(queries.size(), begin + static_cast<size_t>(std::max<int64_t>(1, max_batch)));
    TokenRows seqs;
    std::vector<std::pair<int64_t, int64_t>> spans;
    for (size_t i = begin; i < end; ++i) {
      auto rs = ReversedSequence(layout, queries[i]);
      if (!rs.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("query ", i, ": ", rs.status().message()));
      }
      seqs.push_back(std::move(rs->first));
      spans.push_back(rs->second);
    }
    DUET_ASSIGN_OR_RETURN(std::vector<SpanScore> scores, ScoreSpans(model, layout, seqs, spans));
    for (const SpanScore& s : scores) rewards.push_back(s.mean_logprob);
  }
  return rewards;
}

}  // namespace duet
