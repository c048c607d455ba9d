#ifndef DUET_LEARNER_SERVICE_RUN_STATE_H_
#define DUET_LEARNER_SERVICE_RUN_STATE_H_

// What a learner's run leaves in its output folder, and where a resumed run starts:
//   <out>/recipe.yaml        the recipe, as run
//   <out>/checkpoints/       the latest checkpoints (learner/checkpoint.h: never
//                            half-written); each state.json holds the step, the policy
//                            version, the run id and the recipe
//   <out>/metrics.jsonl      one StepRecord per step; a resumed run drops the lines past
//                            its checkpoint, so that every step appears once
//   <out>/final_state.json   where every process ended (written last)
//
// Time: checkpoints are timed on the injected Clock (for the telemetry).
//
// Thread-safety: thread-compatible; the learner's training thread uses it.

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/model/transformer.h"
#include "learner/adamw.h"
#include "learner/service/learner_telemetry.h"
#include "learner/service/work_queue.h"
#include "learner/step_record.h"

namespace duet {

// Where a run starts: step 0 at version 0, or a checkpoint's step and version.
struct ResumePoint {
  int64_t step = 0;
  int64_t version = 0;
  std::string dir;  // the checkpoint resumed from; empty for a fresh start
};

class RunState {
 public:
  // `out`: the run's folder. `run_id` and `recipe_yaml` go into every checkpoint's
  // state. `clock` and `telemetry` are not owned and must outlive this object.
  RunState(std::string out, std::string run_id, std::string recipe_yaml, Clock* clock,
           LearnerTelemetry* telemetry);

  // Creates the folder and writes recipe.yaml.
  absl::Status Begin();

  // Restores `model` and `optimizer` from the latest checkpoint and returns its step and
  // version; a fresh start (nothing changed) when there is none. DataLoss when its
  // state.json is malformed; the checkpoint's errors otherwise.
  absl::StatusOr<ResumePoint> Resume(Transformer& model, AdamW& optimizer);

  // Drops the lines of metrics.jsonl past `start` (a resumed run repeats those steps)
  // and opens it for appending.
  absl::Status OpenMetricsLog(int64_t start);
  // Appends `record` as one line, flushed. REQUIRES: OpenMetricsLog succeeded.
  void AppendStep(const StepRecord& record);

  // Writes the checkpoint of `step` at policy `version` (keeping the previous one), timed
  // and recorded in the telemetry.
  absl::Status Checkpoint(int64_t step, int64_t version, const Transformer& model,
                          const AdamW& optimizer);

  // final_state.json for a run stopped before its worker pools formed (nothing trained).
  absl::Status WriteStoppedBeforePools(int64_t step, int64_t version, uint64_t checksum);
  // final_state.json at the end: the learner's step, version and checksum, and what each
  // worker confirmed at the last sync. Under `frozen_scorer` a scorer's entry says it
  // computes with the base weights ("weights": "base"), the others' "policy".
  absl::Status WriteFinalState(int64_t step, int64_t version, uint64_t checksum,
                               const std::vector<WorkerRecord>& workers,
                               bool frozen_scorer);

  const std::string& out() const { return out_; }
  std::string checkpoints_dir() const;
  std::string metrics_path() const;
  std::string final_state_path() const;

 private:
  const std::string out_;
  const std::string run_id_;
  const std::string recipe_yaml_;
  Clock* const clock_;
  LearnerTelemetry* const telemetry_;
  std::ofstream metrics_;  // metrics.jsonl, opened by OpenMetricsLog
};

// Keeps the lines of the metrics log at `path` whose "step" is at most `last_step` (all
// of them when the log does not exist yet).
absl::Status TruncateMetricsLog(const std::string& path, int64_t last_step);

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_RUN_STATE_H_
