#include "learner/service/run_state.h"

#include <glog/logging.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "learner/checkpoint.h"

namespace duet {

absl::Status TruncateMetricsLog(const std::string& path, int64_t last_step) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) return absl::OkStatus();
  DUET_RETURN_IF_ERROR(text.status());
  std::string kept;
  int dropped = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    const nlohmann::json j =
        nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() > last_step) {
      ++dropped;
      continue;
    }
    absl::StrAppend(&kept, line, "\n");
  }
  if (dropped == 0) return absl::OkStatus();
  LOG(INFO) << "dropped " << dropped << " lines of " << path << " past step " << last_step
            << " (re-run after resume)";
  return WriteFileAtomically(path, kept);
}

RunState::RunState(std::string out, std::string run_id, std::string recipe_yaml,
                   Clock* clock, LearnerTelemetry* telemetry)
    : out_(std::move(out)),
      run_id_(std::move(run_id)),
      recipe_yaml_(std::move(recipe_yaml)),
      clock_(clock),
      telemetry_(telemetry) {}

std::string RunState::checkpoints_dir() const { return JoinPath(out_, "checkpoints"); }
std::string RunState::metrics_path() const { return JoinPath(out_, "metrics.jsonl"); }
std::string RunState::final_state_path() const {
  return JoinPath(out_, "final_state.json");
}

absl::Status RunState::Begin() {
  DUET_RETURN_IF_ERROR(MakeDirs(out_));
  return WriteFileAtomically(JoinPath(out_, "recipe.yaml"), recipe_yaml_);
}

absl::StatusOr<ResumePoint> RunState::Resume(Transformer& model, AdamW& optimizer) {
  ResumePoint point;
  DUET_ASSIGN_OR_RETURN(auto ckpt, RestoreLatestCheckpoint(checkpoints_dir(), model));
  if (!ckpt.has_value()) return point;
  DUET_RETURN_IF_ERROR(optimizer.LoadState(ckpt->optimizer));
  nlohmann::json state = nlohmann::json::parse(ckpt->state_json, nullptr, false);
  if (state.is_discarded() || !state.contains("policy_version")) {
    return absl::DataLossError(absl::StrCat(ckpt->dir, "/state.json is malformed"));
  }
  point.step = ckpt->step;
  point.version = state["policy_version"].get<int64_t>();
  point.dir = ckpt->dir;
  LOG(INFO) << "resumed from " << ckpt->dir << ": step " << point.step
            << ", policy version " << point.version;
  return point;
}

absl::Status RunState::OpenMetricsLog(int64_t start) {
  const std::string path = metrics_path();
  DUET_RETURN_IF_ERROR(TruncateMetricsLog(path, start));
  metrics_.open(path, std::ios::app);
  return absl::OkStatus();
}

void RunState::AppendStep(const StepRecord& record) {
  metrics_ << StepRecordToJson(record).dump() << "\n" << std::flush;
}

absl::Status RunState::Checkpoint(int64_t step, int64_t version, const Transformer& model,
                                  const AdamW& optimizer) {
  const absl::Time t0 = clock_->Now();
  nlohmann::json state = {{"step", step},
                          {"policy_version", version},
                          {"run_id", run_id_},
                          {"recipe", recipe_yaml_}};
  const absl::Status s = WriteCheckpoint(checkpoints_dir(), step, model, optimizer,
                                         state.dump(2), /*keep=*/1);
  telemetry_->RecordCheckpoint(step, absl::ToDoubleSeconds(clock_->Now() - t0), s);
  return s;
}

absl::Status RunState::WriteStoppedBeforePools(int64_t step, int64_t version,
                                               uint64_t checksum) {
  nlohmann::json final_state = {{"step", step},
                                {"policy_version", version},
                                {"checksum", checksum},
                                {"workers", nlohmann::json::array()},
                                {"stopped_before_pools_formed", true}};
  return WriteFileAtomically(final_state_path(), final_state.dump(2));
}

absl::Status RunState::WriteFinalState(int64_t step, int64_t version, uint64_t checksum,
                                       const std::vector<WorkerRecord>& workers,
                                       bool frozen_scorer) {
  nlohmann::json final_state = {{"step", step},
                                {"policy_version", version},
                                {"checksum", checksum},
                                {"workers", nlohmann::json::array()}};
  for (const WorkerRecord& w : workers) {
    final_state["workers"].push_back(
        {{"id", w.id},
         {"name", w.name},
         {"rank", w.rank},
         {"policy_version", w.confirmed_version},
         {"checksum", w.confirmed_checksum},
         {"items_completed", w.items_completed},
         {"weights", frozen_scorer && w.role == v1::ROLE_SCORER ? "base" : "policy"}});
  }
  return WriteFileAtomically(final_state_path(), final_state.dump(2));
}

}  // namespace duet
