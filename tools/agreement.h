#ifndef DUET_TOOLS_AGREEMENT_H_
#define DUET_TOOLS_AGREEMENT_H_

// Statistics of `duet dev reward-agreement` and of multi-seed ShapesEval: how a reward
// ranks the samples of groups against the oracle's verdicts, and the mean of a figure
// over several seeds with its spread and confidence interval.
//
// Thread-safety: pure functions and value types.

#include <cstdint>
#include <vector>

namespace duet {

// How a reward ranks the samples of some groups, judged by the oracle.
struct Agreement {
  int64_t groups = 0;
  int64_t samples = 0;
  // Share of all samples the oracle accepts: a random pick's accuracy.
  double random_accuracy = 0;
  // Share of groups whose highest-reward sample the oracle accepts (the first of equal
  // rewards counts).
  double best_of_k_accuracy = 0;
  // Over the pairs (accepted, rejected) of one group: the share in which the accepted
  // sample has the higher reward, ties counting one half. 0 when there are no pairs.
  double pairwise_accuracy = 0;
  int64_t pairs = 0;
};

// labels[g][s]: the oracle's verdict on sample s of group g; rewards[g][s] its reward.
// REQUIRES: labels and rewards have the same shape.
Agreement MeasureAgreement(const std::vector<std::vector<bool>>& labels,
                           const std::vector<std::vector<double>>& rewards);

// A figure measured under several seeds.
struct SeedSummary {
  int64_t n = 0;
  double mean = 0;
  double stddev = 0;  // sample standard deviation (n - 1); 0 when n < 2
  double min = 0;
  double max = 0;
  // Half-width of the 95% confidence interval of the mean (Student t, n - 1 degrees of
  // freedom); 0 when n < 2.
  double ci95 = 0;
};

SeedSummary Summarize(const std::vector<double>& values);

}  // namespace duet

#endif  // DUET_TOOLS_AGREEMENT_H_
