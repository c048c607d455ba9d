#include "tools/agreement.h"

#include <algorithm>
#include <cmath>

namespace duet {

Agreement MeasureAgreement(const std::vector<std::vector<bool>>& labels,
                           const std::vector<std::vector<double>>& rewards) {
  Agreement a;
  int64_t correct = 0, best = 0;
  double right_pairs = 0;
  for (size_t g = 0; g < labels.size(); ++g) {
    if (labels[g].empty()) continue;
    ++a.groups;
    size_t arg = 0;
    for (size_t s = 0; s < labels[g].size(); ++s) {
      correct += labels[g][s];
      ++a.samples;
      if (rewards[g][s] > rewards[g][arg]) arg = s;
      for (size_t t = 0; t < labels[g].size(); ++t) {
        if (!labels[g][s] || labels[g][t]) continue;
        ++a.pairs;
        if (rewards[g][s] > rewards[g][t]) {
          right_pairs += 1;
        } else if (rewards[g][s] == rewards[g][t]) {
          right_pairs += 0.5;
        }
      }
    }
    best += labels[g][arg];
  }
  a.random_accuracy = a.samples ? static_cast<double>(correct) / a.samples : 0;
  a.best_of_k_accuracy = a.groups ? static_cast<double>(best) / a.groups : 0;
  a.pairwise_accuracy = a.pairs ? right_pairs / a.pairs : 0;
  return a;
}

SeedSummary Summarize(const std::vector<double>& values) {
  SeedSummary s;
  s.n = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / s.n;
  if (s.n < 2) return s;
  double ss = 0;
  for (double v : values) ss += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(ss / (s.n - 1));
  // Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
  static constexpr double kT975[] = {
      12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
      2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
      2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  const int64_t df = s.n - 1;
  const double t = df <= 30 ? kT975[df - 1] : 1.96;
  s.ci95 = t * s.stddev / std::sqrt(static_cast<double>(s.n));
  return s;
}

}  // namespace duet
