#include "learner/service/run_state.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/model/test_models.h"
#include "common/weights/weight_sync.h"
#include "learner/checkpoint.h"
#include "learner/testing/tiny_training.h"

namespace duet {
namespace {

namespace fs = std::filesystem;

using testing::TinyModel;
using testing::TrainOneStep;

bool SameTensors(const TensorMap& a, const TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end() || !torch::equal(t, it->second)) return false;
  }
  return true;
}

std::vector<int64_t> LoggedSteps(const std::string& path) {
  std::vector<int64_t> steps;
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty()))
    steps.push_back(nlohmann::json::parse(line)["step"].get<int64_t>());
  return steps;
}

StepRecord Record(int64_t step) {
  StepRecord r;
  r.step = step;
  return r;
}

class RunStateTest : public ::testing::Test {
 protected:
  RunState Make(const std::string& out) {
    return RunState(out, "run-test", "steps: 4\n", &clock_, &telemetry_);
  }

  const testing::ScratchDir scratch_{"run_state_test"};
  FakeClock clock_;
  LearnerTelemetry telemetry_{/*registry=*/nullptr, &clock_};
};

// A run checkpoints after every step and logs one step past each checkpoint before it
// "crashes". From each checkpoint it wrote, a resumed run gets the step, the version,
// the weights and the optimizer state of that checkpoint, and a metrics log without the
// lines past it.
TEST_F(RunStateTest, EveryCheckpointOfARunCanBeResumedFrom) {
  const std::string out = scratch_.Join("run");
  RunState run = Make(out);
  ASSERT_TRUE(run.Begin().ok());
  ASSERT_TRUE(run.OpenMetricsLog(/*start=*/0).ok());
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  constexpr int kSteps = 4;
  for (int64_t step = 1; step <= kSteps; ++step) {
    TrainOneStep(model, opt);
    run.AppendStep(Record(step));
    const int64_t version = 10 * step;  // versions need not equal steps
    ASSERT_TRUE(run.Checkpoint(step, version, model, opt).ok());
    const uint64_t checksum = WeightChecksum(model.parameters());
    const TensorMap optimizer_state = opt.State();
    // The copy is what a restart sees when the run went on to log the next step and
    // died before its next checkpoint.
    const std::string copy = scratch_.Join("resume-" + std::to_string(step));
    fs::copy(out, copy, fs::copy_options::recursive);
    {
      std::ofstream log(JoinPath(copy, "metrics.jsonl"), std::ios::app);
      log << StepRecordToJson(Record(step + 1)).dump() << "\n";
    }

    RunState resumed = Make(copy);
    Transformer fresh = TinyModel(/*seed=*/100 + step);
    AdamW fresh_opt(fresh.parameters(), AdamWOptions{});
    ASSERT_NE(WeightChecksum(fresh.parameters()), checksum);
    absl::StatusOr<ResumePoint> point = resumed.Resume(fresh, fresh_opt);
    ASSERT_TRUE(point.ok()) << point.status();
    EXPECT_EQ(point->step, step);
    EXPECT_EQ(point->version, version);
    EXPECT_FALSE(point->dir.empty());
    EXPECT_EQ(WeightChecksum(fresh.parameters()), checksum) << "step " << step;
    EXPECT_TRUE(SameTensors(fresh_opt.State(), optimizer_state)) << "step " << step;
    EXPECT_EQ(fresh_opt.step(), opt.step());
    ASSERT_TRUE(resumed.OpenMetricsLog(point->step).ok());
    std::vector<int64_t> want;
    for (int64_t s = 1; s <= step; ++s) want.push_back(s);
    EXPECT_EQ(LoggedSteps(resumed.metrics_path()), want) << "step " << step;
  }
}

TEST_F(RunStateTest, WithoutACheckpointARunStartsFresh) {
  RunState run = Make(scratch_.Join("fresh"));
  ASSERT_TRUE(run.Begin().ok());
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  const uint64_t before = WeightChecksum(model.parameters());
  absl::StatusOr<ResumePoint> point = run.Resume(model, opt);
  ASSERT_TRUE(point.ok()) << point.status();
  EXPECT_EQ(point->step, 0);
  EXPECT_EQ(point->version, 0);
  EXPECT_TRUE(point->dir.empty());
  EXPECT_EQ(WeightChecksum(model.parameters()), before);
  EXPECT_TRUE(ReadFileToString(JoinPath(run.out(), "recipe.yaml")).ok());
}

TEST_F(RunStateTest, ACheckpointWithoutAVersionIsDataLoss) {
  RunState run = Make(scratch_.Join("malformed"));
  ASSERT_TRUE(run.Begin().ok());
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  ASSERT_TRUE(
      WriteCheckpoint(run.checkpoints_dir(), /*step=*/2, model, opt, "{\"step\": 2}")
          .ok());
  EXPECT_EQ(run.Resume(model, opt).status().code(), absl::StatusCode::kDataLoss);
}

// The checkpoint's state names the run, its version and its recipe; the time it took is
// measured on the clock (a fake one: zero).
TEST_F(RunStateTest, ACheckpointRecordsTheRunAndItsVersion) {
  RunState run = Make(scratch_.Join("state"));
  ASSERT_TRUE(run.Begin().ok());
  Transformer model = TinyModel(1);
  AdamW opt(model.parameters(), AdamWOptions{});
  ASSERT_TRUE(run.Checkpoint(/*step=*/3, /*version=*/7, model, opt).ok());
  Transformer other = TinyModel(2);
  auto ckpt = RestoreLatestCheckpoint(run.checkpoints_dir(), other);
  ASSERT_TRUE(ckpt.ok() && ckpt->has_value());
  const nlohmann::json state = nlohmann::json::parse((*ckpt)->state_json);
  EXPECT_EQ(state["step"], 3);
  EXPECT_EQ(state["policy_version"], 7);
  EXPECT_EQ(state["run_id"], "run-test");
  EXPECT_EQ(state["recipe"], "steps: 4\n");
}

TEST_F(RunStateTest, TheFinalStateNamesEveryWorkerAndAFrozenJudge) {
  RunState run = Make(scratch_.Join("final"));
  ASSERT_TRUE(run.Begin().ok());
  WorkerRecord rollout;
  rollout.id = "r";
  rollout.role = v1::ROLE_ROLLOUT;
  rollout.confirmed_version = 5;
  rollout.confirmed_checksum = 42;
  WorkerRecord judge = rollout;
  judge.id = "s";
  judge.role = v1::ROLE_SCORER;
  ASSERT_TRUE(run.WriteFinalState(/*step=*/4, /*version=*/5, /*checksum=*/42,
                                  {rollout, judge}, /*frozen_scorer=*/true)
                  .ok());
  const nlohmann::json j =
      nlohmann::json::parse(*ReadFileToString(run.final_state_path()));
  EXPECT_EQ(j["step"], 4);
  EXPECT_EQ(j["policy_version"], 5);
  EXPECT_EQ(j["checksum"], 42u);
  ASSERT_EQ(j["workers"].size(), 2u);
  EXPECT_EQ(j["workers"][0]["weights"], "policy");
  EXPECT_EQ(j["workers"][1]["weights"], "base");
  EXPECT_EQ(j["workers"][1]["policy_version"], 5);
}

}  // namespace
}  // namespace duet
