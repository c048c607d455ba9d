#include "tools/agreement.h"

#include <gtest/gtest.h>

#include <cmath>

namespace duet {
namespace {

TEST(MeasureAgreementTest, CountsPairsOfDifferentVerdictsWithinGroupsOnly) {
  // Group 0: the accepted sample outranks one rejected sample and loses to the other.
  // Group 1: all accepted (no pairs); best-of-k is its highest reward, accepted.
  const std::vector<std::vector<bool>> labels = {{true, false, false}, {true, true}};
  const std::vector<std::vector<double>> rewards = {{-1.0, -2.0, -0.5}, {-3.0, -1.0}};
  const Agreement a = MeasureAgreement(labels, rewards);
  EXPECT_EQ(a.groups, 2);
  EXPECT_EQ(a.samples, 5);
  EXPECT_EQ(a.pairs, 2);
  EXPECT_DOUBLE_EQ(a.pairwise_accuracy, 0.5);
  EXPECT_DOUBLE_EQ(a.random_accuracy, 3.0 / 5);
  EXPECT_DOUBLE_EQ(a.best_of_k_accuracy, 0.5);  // group 0 picks the rejected -0.5
}

TEST(MeasureAgreementTest, TiesCountOneHalf) {
  const Agreement a = MeasureAgreement({{true, false}}, {{-1.0, -1.0}});
  EXPECT_EQ(a.pairs, 1);
  EXPECT_DOUBLE_EQ(a.pairwise_accuracy, 0.5);
  EXPECT_DOUBLE_EQ(MeasureAgreement({}, {}).pairwise_accuracy, 0.0);
}

TEST(SummarizeTest, MeanSpreadAndStudentInterval) {
  const SeedSummary s = Summarize({1.0, 2.0, 3.0});
  EXPECT_EQ(s.n, 3);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.stddev, 1.0);
  EXPECT_DOUBLE_EQ(s.min, 1.0);
  EXPECT_DOUBLE_EQ(s.max, 3.0);
  EXPECT_NEAR(s.ci95, 4.303 / std::sqrt(3.0), 1e-9);
  const SeedSummary one = Summarize({0.25});
  EXPECT_DOUBLE_EQ(one.mean, 0.25);
  EXPECT_DOUBLE_EQ(one.stddev, 0.0);
  EXPECT_DOUBLE_EQ(one.ci95, 0.0);
}

}  // namespace
}  // namespace duet
