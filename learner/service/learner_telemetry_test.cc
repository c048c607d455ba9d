#include "learner/service/learner_telemetry.h"

#include <gtest/gtest.h>

#include <string>

#include "common/base/clock.h"

namespace duet {
namespace {

// The value of counter or gauge `name` with label direction=`direction` in `registry`;
// -1 when absent.
double Value(prometheus::Registry& registry, const std::string& name,
             const std::string& direction) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != name) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "direction" && l.value == direction) {
          return f.type == prometheus::MetricType::Counter ? m.counter.value
                                                           : m.gauge.value;
        }
      }
    }
  }
  return -1;
}

// Stale samples (asynchronous mode) are counted per direction, step after step, apart
// from the samples trained on.
TEST(LearnerTelemetryTest, CountsStaleSamplesDroppedPerDirection) {
  auto registry = std::make_shared<prometheus::Registry>();
  LearnerTelemetry telemetry(registry, RealClock());
  const std::string kDropped = "duet_learner_stale_samples_dropped_total";
  EXPECT_EQ(Value(*registry, kDropped, "generation"), 0);
  StepReport r;
  r.generation_stats.samples = 8;
  r.generation_stats.samples_dropped_stale = 16;
  r.understanding_stats.samples = 4;
  r.understanding_stats.samples_dropped_stale = 0;
  r.samples_dropped_stale = 16;
  telemetry.RecordStep(r, /*lr=*/1e-4, /*sync_seconds=*/0, /*step_seconds=*/1);
  r.step = 1;
  r.understanding_stats.samples_dropped_stale = 4;
  telemetry.RecordStep(r, /*lr=*/1e-4, /*sync_seconds=*/0, /*step_seconds=*/1);
  EXPECT_EQ(Value(*registry, kDropped, "generation"), 32);
  EXPECT_EQ(Value(*registry, kDropped, "understanding"), 4);
  EXPECT_EQ(Value(*registry, "duet_learner_samples_total", "generation"), 16);
  EXPECT_EQ(Value(*registry, "duet_learner_samples_total", "understanding"), 8);
}

}  // namespace
}  // namespace duet
