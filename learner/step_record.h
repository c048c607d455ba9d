#ifndef DUET_LEARNER_STEP_RECORD_H_
#define DUET_LEARNER_STEP_RECORD_H_

// The metrics record of one RL step: a line of `<run>/metrics.jsonl` (duet-learner) and a
// point of `rl_report.json` (duet rl). One type, written and read by the code below, so
// the schema lives in one place.
//
// Thread-safety: plain values and free functions.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "learner/rl_loop.h"

namespace duet {

struct StepRecord {
  int64_t step = 0;            // steps completed (1-based)
  int64_t policy_version = 0;  // after the update
  double generation_reward = 0;
  double understanding_reward = 0;
  double kl = 0;
  double loss = 0;
  double grad_norm = 0;
  double logprob_max_diff = 0;
  double rollout_s = 0;
  double score_s = 0;
  double update_s = 0;
  double sync_s = 0;  // weight broadcast (duet-learner)
  double wait_s =
      0;  // waiting for the step's collection (asynchronous mode: the part not hidden)
  int64_t samples = 0;
  // Largest (policy version - sample's version) among the samples trained on, and the
  // samples dropped as older than the lag bound (absent in older logs: read as 0).
  int64_t max_sample_lag = 0;
  int64_t samples_dropped_stale = 0;
  int64_t logprob_samples_checked = 0;    // the samples logprob_max_diff covers
  std::optional<uint64_t> checksum;       // published weights (duet-learner)
  std::optional<double> eval_generation;  // ShapesEval mid-run (duet rl --eval_every)
  std::optional<double> eval_understanding;

  // The record of `report` (step `report.step`, 0-based, becomes step + 1).
  static StepRecord FromReport(const StepReport& report);
};

nlohmann::json StepRecordToJson(const StepRecord& record);
// InvalidArgument when a required key is missing or has the wrong type.
absl::StatusOr<StepRecord> StepRecordFromJson(const nlohmann::json& json);

// Every record of a metrics.jsonl file, in order. A line that does not parse (a torn last
// line after a crash) is skipped and counted in `*skipped` when it is not null.
// NotFound when the file does not exist.
absl::StatusOr<std::vector<StepRecord>> ReadStepRecords(const std::string& path,
                                                        int* skipped = nullptr);

}  // namespace duet

#endif  // DUET_LEARNER_STEP_RECORD_H_
