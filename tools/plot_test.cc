#include "tools/plot.h"

#include <gtest/gtest.h>

namespace duet {
namespace {

TEST(RunningMeanTest, AveragesTheLastWindowAndFewerAtTheStart) {
  EXPECT_EQ(RunningMean({2, 4, 6, 8}, 2), (std::vector<double>{2, 3, 5, 7}));
  EXPECT_TRUE(RunningMean({}, 3).empty());
}

// A 10-step run compared its first 10 steps with its last 10, the same steps: "-4.111 ->
// -4.111" (issue 16 point 9). The two windows never share a step.
TEST(RewardTrendLineTest, TheFirstAndLastWindowsNeverOverlap) {
  std::vector<double> ten;
  for (int i = 0; i < 10; ++i) ten.push_back(i);
  EXPECT_EQ(RewardTrendLine("generation", ten, 10),
            "generation self-reward (mean of the first and of the last 5 steps): 2.000 "
            "-> 7.000\n");
  std::vector<double> forty;
  for (int i = 0; i < 40; ++i) forty.push_back(i);
  EXPECT_EQ(RewardTrendLine("understanding", forty, 10),
            "understanding self-reward (mean of the first and of the last 10 steps): "
            "4.500 -> 34.500\n");
  EXPECT_EQ(RewardTrendLine("generation", {1, 3, 5}, 10),
            "generation self-reward (mean of the first and of the last 1 steps): 1.000 "
            "-> 5.000\n");
  EXPECT_EQ(RewardTrendLine("generation", {-4.111}, 10),
            "generation self-reward: -4.111 (one step, no trend)\n");
  EXPECT_EQ(RewardTrendLine("generation", {}, 10), "");
}

}  // namespace
}  // namespace duet
