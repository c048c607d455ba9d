#include "scorer/self_reward.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/world/caption.h"
#include "common/world/text_tokenizer.h"

namespace duet {

absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>>
ReversedSequence(const TokenLayout& layout, const RewardQuery& q) {
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

absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>> NullSequence(
    const TokenLayout& layout, const RewardQuery& q) {
  DUET_ASSIGN_OR_RETURN(auto reversed, ReversedSequence(layout, q));
  std::vector<int64_t> seq;
  if (q.task == Task::kGeneration) {
    // The image replaced by <pad>s: <bos> <describe> <boi> <pad> x n <eoi> P <eos>.
    seq = {layout.bos, layout.describe, layout.boi};
    seq.insert(seq.end(), q.output.size(), layout.pad);
    seq.push_back(layout.eoi);
  } else {
    seq = UnconditionalDrawPrompt(layout, StripEos(layout, q.output).size());
  }
  // The reversed sequence's prefix and the null prefix have the same length.
  const auto [begin, end] = reversed.second;
  seq.insert(seq.end(), reversed.first.begin() + begin, reversed.first.begin() + end);
  return std::make_pair(seq, reversed.second);
}

absl::StatusOr<std::pair<std::vector<int64_t>, std::pair<int64_t, int64_t>>>
ForwardSequence(const TokenLayout& layout, const RewardQuery& q) {
  DUET_ASSIGN_OR_RETURN(auto reversed, ReversedSequence(layout, q));  // validates q
  std::vector<int64_t> seq;
  if (q.task == Task::kGeneration) {
    seq = DrawPrompt(layout, q.input);
    const int64_t begin = static_cast<int64_t>(seq.size());
    seq.insert(seq.end(), q.output.begin(), q.output.end());
    return std::make_pair(seq, std::make_pair(begin, static_cast<int64_t>(seq.size())));
  }
  seq = DescribePrompt(layout, q.input);
  const int64_t begin = static_cast<int64_t>(seq.size());
  const std::vector<int64_t> caption = StripEos(layout, q.output);
  seq.insert(seq.end(), caption.begin(), caption.end());
  seq.push_back(layout.eos);
  return std::make_pair(seq, std::make_pair(begin, static_cast<int64_t>(seq.size())));
}

std::vector<RewardQuery> CaptionVariants(const TokenLayout& layout,
                                         const RewardQuery& q) {
  if (layout.text_end - layout.text_begin < world::TextTokenizer::kNumWords) return {};
  const world::TextTokenizer tokenizer(layout);
  const std::vector<int64_t> caption =
      q.task == Task::kGeneration ? q.input : StripEos(layout, q.output);
  absl::StatusOr<std::string> text = tokenizer.Decode(caption);
  if (!text.ok()) return {};
  absl::StatusOr<world::Caption> parsed = world::ParseCaption(*text);
  if (!parsed.ok())
    return {};  // outside the grammar: no variants, the reward is kJoint's
  std::vector<RewardQuery> out;
  for (const world::Caption& variant : world::RelationVariants(*parsed)) {
    absl::StatusOr<std::vector<int64_t>> ids =
        tokenizer.Encode(world::FormatCaption(variant));
    if (!ids.ok()) return {};  // every word of a formatted caption is in the vocabulary
    RewardQuery v = q;
    (q.task == Task::kGeneration ? v.input : v.output) = *std::move(ids);
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<std::vector<PairScores>> ScoreReversedPairs(
    const Transformer& model, const TokenLayout& layout,
    const std::vector<RewardQuery>& queries, int64_t max_batch,
    const std::vector<ExtraPasses>& extra) {
  if (extra.size() != queries.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ScoreReversedPairs: ", extra.size(),
                                                   " pass sets for ", queries.size(),
                                                   " queries"));
  }
  const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, max_batch));
  std::vector<PairScores> out(queries.size());
  // The relation variants of the queries that ask for them: query i's, in order, after
  // i-1's. Scored by the reversed pass, as the queries themselves are.
  std::vector<std::pair<size_t, RewardQuery>> variants;
  for (size_t i = 0; i < queries.size(); ++i) {
    if (!extra[i].variants) continue;
    for (RewardQuery& v : CaptionVariants(layout, queries[i]))
      variants.emplace_back(i, std::move(v));
  }
  enum Pass { kReversed, kNull, kForward, kVariants };
  for (Pass pass : {kReversed, kNull, kForward, kVariants}) {
    // Each row of this pass: the index of the query it belongs to, and what it scores.
    std::vector<std::pair<size_t, const RewardQuery*>> rows;
    if (pass == kVariants) {
      for (const auto& [i, v] : variants) rows.emplace_back(i, &v);
    } else {
      for (size_t i = 0; i < queries.size(); ++i) {
        if (pass == kReversed || (pass == kNull && extra[i].null) ||
            (pass == kForward && extra[i].forward)) {
          rows.emplace_back(i, &queries[i]);
        }
      }
    }
    for (size_t begin = 0; begin < rows.size(); begin += chunk) {
      const size_t end = std::min(rows.size(), begin + chunk);
      TokenRows seqs;
      std::vector<std::pair<int64_t, int64_t>> spans;
      for (size_t r = begin; r < end; ++r) {
        const RewardQuery& q = *rows[r].second;
        auto rs = pass == kNull      ? NullSequence(layout, q)
                  : pass == kForward ? ForwardSequence(layout, q)
                                     : ReversedSequence(layout, q);
        if (!rs.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "query ", rows[r].first, pass == kVariants ? " (relation variant)" : "",
              ": ", rs.status().message()));
        }
        seqs.push_back(std::move(rs->first));
        spans.push_back(rs->second);
      }
      DUET_ASSIGN_OR_RETURN(std::vector<SpanScore> scores,
                            ScoreSpans(model, layout, seqs, spans));
      for (size_t r = begin; r < end; ++r) {
        PairScores& p = out[rows[r].first];
        std::vector<float>& logprobs = scores[r - begin].token_logprobs;
        if (pass == kVariants) {
          double sum = 0;
          for (float v : logprobs) sum += v;
          p.variant_sums.push_back(sum);
        } else {
          (pass == kReversed ? p.conditional
           : pass == kNull   ? p.null
                             : p.forward) = std::move(logprobs);
        }
      }
    }
  }
  return out;
}

double CombineReward(RewardKind kind, const PairScores& s) {
  const size_t n = s.conditional.size();
  // Summed in order in double, as ScoreSpans sums mean_logprob.
  double sum = 0;
  for (float v : s.conditional) sum += v;
  if (kind == RewardKind::kLikelihood) return sum / static_cast<double>(n);
  if (kind == RewardKind::kJoint) {
    for (float v : s.forward) sum += v;
    return sum / static_cast<double>(n);
  }
  if (kind == RewardKind::kContrast) {
    const double conditional = sum;
    for (float v : s.forward) sum += v;
    // log p(pair) - log sum over the caption and its variants, stably.
    double top = conditional;
    for (double v : s.variant_sums) top = std::max(top, v);
    double mass = std::exp(conditional - top);
    for (double v : s.variant_sums) mass += std::exp(v - top);
    const double log_posterior = conditional - (top + std::log(mass));
    return (sum + log_posterior) / static_cast<double>(n);
  }
  std::vector<double> pmi(n);
  for (size_t t = 0; t < n; ++t)
    pmi[t] = static_cast<double>(s.conditional[t]) - s.null[t];
  if (kind == RewardKind::kPmiWorst) {
    const size_t k = std::min<size_t>(n, kPmiWorstTokens);
    std::partial_sort(pmi.begin(), pmi.begin() + k, pmi.end());
    pmi.resize(k);
  }
  double pmi_sum = 0;
  for (double v : pmi) pmi_sum += v;
  return pmi_sum / static_cast<double>(pmi.size());
}

absl::StatusOr<std::vector<double>> ComputeSelfRewards(
    const Transformer& model, const TokenLayout& layout,
    const std::vector<RewardQuery>& queries, int64_t max_batch,
    const SelfRewardKinds& kinds) {
  auto kind_of = [&kinds](const RewardQuery& q) {
    return q.task == Task::kGeneration ? kinds.image : kinds.caption;
  };
  std::vector<ExtraPasses> extra(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) extra[i] = PassesFor(kind_of(queries[i]));
  DUET_ASSIGN_OR_RETURN(std::vector<PairScores> scores,
                        ScoreReversedPairs(model, layout, queries, max_batch, extra));
  std::vector<double> rewards;
  rewards.reserve(queries.size());
  for (size_t i = 0; i < queries.size(); ++i)
    rewards.push_back(CombineReward(kind_of(queries[i]), scores[i]));
  return rewards;
}

}  // namespace duet
