#include "learner/step_record.h"

#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <string>

#include "common/base/test_util.h"

namespace duet {
namespace {

StepRecord FullRecord() {
  StepRecord r;
  r.step = 12;
  r.policy_version = 11;
  r.generation_reward = -1.25;
  r.understanding_reward = 0.5;
  r.kl = 0.0125;
  r.loss = -0.375;
  r.grad_norm = 3.5;
  r.logprob_max_diff = 1e-6;
  r.rollout_s = 1.5;
  r.score_s = 0.25;
  r.update_s = 0.75;
  r.sync_s = 0.125;
  r.wait_s = 0.0625;
  r.samples = 192;
  r.max_sample_lag = 2;
  r.samples_dropped_stale = 16;
  r.logprob_samples_checked = 4;
  r.checksum = std::numeric_limits<uint64_t>::max() - 7;  // above INT64_MAX
  r.eval_generation = 0.625;
  r.eval_understanding = 0.875;
  return r;
}

void ExpectRecordEq(const StepRecord& a, const StepRecord& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.policy_version, b.policy_version);
  EXPECT_EQ(a.generation_reward, b.generation_reward);
  EXPECT_EQ(a.understanding_reward, b.understanding_reward);
  EXPECT_EQ(a.kl, b.kl);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_EQ(a.logprob_max_diff, b.logprob_max_diff);
  EXPECT_EQ(a.rollout_s, b.rollout_s);
  EXPECT_EQ(a.score_s, b.score_s);
  EXPECT_EQ(a.update_s, b.update_s);
  EXPECT_EQ(a.sync_s, b.sync_s);
  EXPECT_EQ(a.wait_s, b.wait_s);
  EXPECT_EQ(a.samples, b.samples);
  EXPECT_EQ(a.max_sample_lag, b.max_sample_lag);
  EXPECT_EQ(a.samples_dropped_stale, b.samples_dropped_stale);
  EXPECT_EQ(a.logprob_samples_checked, b.logprob_samples_checked);
  EXPECT_EQ(a.checksum, b.checksum);
  EXPECT_EQ(a.eval_generation, b.eval_generation);
  EXPECT_EQ(a.eval_understanding, b.eval_understanding);
}

TEST(StepRecordTest, JsonRoundTripWithOptionalFields) {
  const StepRecord r = FullRecord();
  nlohmann::json j = StepRecordToJson(r);
  EXPECT_TRUE(j.contains("checksum"));
  EXPECT_TRUE(j.contains("eval_generation"));
  EXPECT_TRUE(j.contains("eval_understanding"));
  absl::StatusOr<StepRecord> back = StepRecordFromJson(j);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectRecordEq(*back, r);

  // Through text too (what metrics.jsonl holds).
  back = StepRecordFromJson(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectRecordEq(*back, r);
}

TEST(StepRecordTest, JsonRoundTripWithoutOptionalFields) {
  StepRecord r = FullRecord();
  r.checksum.reset();
  r.eval_generation.reset();
  r.eval_understanding.reset();
  nlohmann::json j = StepRecordToJson(r);
  EXPECT_FALSE(j.contains("checksum"));
  EXPECT_FALSE(j.contains("eval_generation"));
  EXPECT_FALSE(j.contains("eval_understanding"));
  absl::StatusOr<StepRecord> back = StepRecordFromJson(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectRecordEq(*back, r);
  EXPECT_FALSE(back->checksum.has_value());
  EXPECT_FALSE(back->eval_generation.has_value());
}

TEST(StepRecordTest, MissingRequiredKeyIsInvalidArgument) {
  const nlohmann::json full = StepRecordToJson(FullRecord());
  for (const char* key :
       {"step", "policy_version", "generation_reward", "understanding_reward", "kl",
        "loss", "grad_norm", "logprob_max_diff", "rollout_s", "score_s", "update_s",
        "sync_s", "samples"}) {
    nlohmann::json j = full;
    j.erase(std::string(key));
    absl::StatusOr<StepRecord> r = StepRecordFromJson(j);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << key << ": " << r.status();
  }
}

// Lines written before the asynchronous mode lack its keys: they read as 0.
TEST(StepRecordTest, AsyncKeysAreOptionalAndReadAsZero) {
  nlohmann::json j = StepRecordToJson(FullRecord());
  for (const char* key :
       {"wait_s", "max_sample_lag", "samples_dropped_stale", "logprob_samples_checked"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    j.erase(std::string(key));
  }
  absl::StatusOr<StepRecord> r = StepRecordFromJson(j);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->wait_s, 0);
  EXPECT_EQ(r->max_sample_lag, 0);
  EXPECT_EQ(r->samples_dropped_stale, 0);
  EXPECT_EQ(r->logprob_samples_checked, 0);
  j = StepRecordToJson(FullRecord());
  j["samples_dropped_stale"] = "many";
  EXPECT_EQ(StepRecordFromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StepRecordTest, WrongTypesAndNonObjectsAreInvalidArgument) {
  nlohmann::json j = StepRecordToJson(FullRecord());
  j["kl"] = "small";
  EXPECT_EQ(StepRecordFromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
  j = StepRecordToJson(FullRecord());
  j["eval_generation"] = nlohmann::json::array({1, 2});
  EXPECT_EQ(StepRecordFromJson(j).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StepRecordFromJson(nlohmann::json::array({1, 2})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StepRecordFromJson(nlohmann::json(3)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StepRecordTest, FromReportCountsStepsFromOne) {
  StepReport report;
  report.step = 4;
  report.policy_version = 9;
  report.generation_reward = 0.5;
  report.understanding_reward = 0.25;
  report.update.loss.kl = 0.01;
  report.update.loss.loss = -0.2;
  report.update.grad_norm = 1.5;
  report.logprob_max_diff = 2e-6;
  report.rollout_seconds = 3;
  report.score_seconds = 2;
  report.update_seconds = 1;
  report.samples = 64;
  report.collect_wait_seconds = 0.5;
  report.max_sample_lag = 1;
  report.samples_dropped_stale = 8;
  report.logprob_samples_checked = 3;
  const StepRecord r = StepRecord::FromReport(report);
  EXPECT_EQ(r.step, 5);
  EXPECT_EQ(r.policy_version, 9);
  EXPECT_EQ(r.generation_reward, 0.5);
  EXPECT_EQ(r.understanding_reward, 0.25);
  EXPECT_EQ(r.kl, 0.01);
  EXPECT_EQ(r.loss, -0.2);
  EXPECT_EQ(r.grad_norm, 1.5);
  EXPECT_EQ(r.logprob_max_diff, 2e-6);
  EXPECT_EQ(r.rollout_s, 3);
  EXPECT_EQ(r.score_s, 2);
  EXPECT_EQ(r.update_s, 1);
  EXPECT_EQ(r.samples, 64);
  EXPECT_EQ(r.wait_s, 0.5);
  EXPECT_EQ(r.max_sample_lag, 1);
  EXPECT_EQ(r.samples_dropped_stale, 8);
  EXPECT_EQ(r.logprob_samples_checked, 3);
  EXPECT_FALSE(r.checksum.has_value());
}

class ReadStepRecordsTest : public ::testing::Test {
 protected:
  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }

  const testing::ScratchDir scratch_{"step_record_test"};
  const std::string path_ = scratch_.Join("records.jsonl");
};

TEST_F(ReadStepRecordsTest, ReadsEveryLineInOrder) {
  std::string text;
  for (int64_t s = 1; s <= 3; ++s) {
    StepRecord r = FullRecord();
    r.step = s;
    if (s == 2) r.checksum.reset();
    text += StepRecordToJson(r).dump() + "\n";
  }
  Write(text + "\n");  // a blank line is not a record
  int skipped = -1;
  auto records = ReadStepRecords(path_, &skipped);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ(skipped, 0);
  for (int64_t s = 1; s <= 3; ++s) EXPECT_EQ((*records)[s - 1].step, s);
  EXPECT_FALSE((*records)[1].checksum.has_value());
  EXPECT_TRUE((*records)[2].checksum.has_value());
}

TEST_F(ReadStepRecordsTest, TornLastLineIsSkippedAndCounted) {
  const std::string line1 = StepRecordToJson(FullRecord()).dump();
  StepRecord second = FullRecord();
  second.step = 13;
  const std::string line2 = StepRecordToJson(second).dump();
  Write(line1 + "\n" + line2 + "\n" + line2.substr(0, line2.size() / 2));
  int skipped = -1;
  auto records = ReadStepRecords(path_, &skipped);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].step, 12);
  EXPECT_EQ((*records)[1].step, 13);
  EXPECT_EQ(skipped, 1);

  // The count is optional.
  auto again = ReadStepRecords(path_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->size(), 2u);
}

TEST_F(ReadStepRecordsTest, MissingFileIsNotFound) {
  auto records = ReadStepRecords(path_ + ".missing");
  EXPECT_EQ(records.status().code(), absl::StatusCode::kNotFound) << records.status();
}

}  // namespace
}  // namespace duet
