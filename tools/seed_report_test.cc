#include "tools/seed_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace duet {
namespace {

using eval::Direction;
using ::testing::HasSubstr;

// A report with `correct` of 10 generation items of the single category right.
eval::ShapesEvalReport Report(int correct) {
  eval::ShapesEvalReport r;
  for (int i = 0; i < 10; ++i)
    r.Add(Direction::kGeneration, world::Category::kSingle, i < correct);
  r.Add(Direction::kUnderstanding, world::Category::kSingle, true);
  return r;
}

TEST(SeedReportTest, MeanSpreadAndIntervalPerCategory) {
  const nlohmann::json j = SeedSpreadJson({Report(2), Report(3), Report(4)}, {1, 2, 3});
  EXPECT_EQ(j["seeds"], nlohmann::json({1, 2, 3}));
  const nlohmann::json& single = j["generation"]["single"];
  EXPECT_EQ(single["per_seed"].size(), 3u);
  EXPECT_NEAR(single["mean"].get<double>(), 0.3, 1e-12);
  EXPECT_NEAR(single["stddev"].get<double>(), 0.1, 1e-12);
  EXPECT_NEAR(single["ci95"].get<double>(), 4.303 * 0.1 / std::sqrt(3.0), 1e-9);
  EXPECT_NEAR(j["generation"]["overall"]["mean"].get<double>(), 0.3, 1e-12);
  EXPECT_DOUBLE_EQ(j["understanding"]["overall"]["ci95"].get<double>(), 0.0);
  EXPECT_TRUE(j["generation"].contains("position"));
}

TEST(SeedReportTest, TableShowsMeanAndInterval) {
  const std::string table = SeedSpreadTable({Report(2), Report(3), Report(4)});
  EXPECT_THAT(table, HasSubstr("3 seeds"));
  EXPECT_THAT(table, HasSubstr("30.0% ±24.8"));  // 4.303 * 10 / sqrt(3) points
  EXPECT_THAT(table, HasSubstr("100.0% ±0.0"));
}

}  // namespace
}  // namespace duet
