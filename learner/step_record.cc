#include "learner/step_record.h"

#include <fstream>

#include "absl/strings/str_cat.h"

namespace duet {

StepRecord StepRecord::FromReport(const StepReport& r) {
  StepRecord s;
  s.step = r.step + 1;
  s.policy_version = r.policy_version;
  s.generation_reward = r.generation_reward;
  s.understanding_reward = r.understanding_reward;
  s.kl = r.update.loss.kl;
  s.loss = r.update.loss.loss;
  s.grad_norm = r.update.grad_norm;
  s.logprob_max_diff = r.logprob_max_diff;
  s.rollout_s = r.rollout_seconds;
  s.score_s = r.score_seconds;
  s.update_s = r.update_seconds;
  s.wait_s = r.collect_wait_seconds;
  s.samples = r.samples;
  s.max_sample_lag = r.max_sample_lag;
  s.samples_dropped_stale = r.samples_dropped_stale;
  s.logprob_samples_checked = r.logprob_samples_checked;
  return s;
}

nlohmann::json StepRecordToJson(const StepRecord& r) {
  nlohmann::json j = {{"step", r.step},
                      {"policy_version", r.policy_version},
                      {"generation_reward", r.generation_reward},
                      {"understanding_reward", r.understanding_reward},
                      {"kl", r.kl},
                      {"loss", r.loss},
                      {"grad_norm", r.grad_norm},
                      {"logprob_max_diff", r.logprob_max_diff},
                      {"rollout_s", r.rollout_s},
                      {"score_s", r.score_s},
                      {"update_s", r.update_s},
                      {"sync_s", r.sync_s},
                      {"wait_s", r.wait_s},
                      {"samples", r.samples},
                      {"max_sample_lag", r.max_sample_lag},
                      {"samples_dropped_stale", r.samples_dropped_stale},
                      {"logprob_samples_checked", r.logprob_samples_checked}};
  if (r.checksum) j["checksum"] = *r.checksum;
  if (r.eval_generation) j["eval_generation"] = *r.eval_generation;
  if (r.eval_understanding) j["eval_understanding"] = *r.eval_understanding;
  return j;
}

absl::StatusOr<StepRecord> StepRecordFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("step record: not a JSON object");
  StepRecord r;
  try {
    r.step = j.at("step").get<int64_t>();
    r.policy_version = j.at("policy_version").get<int64_t>();
    r.generation_reward = j.at("generation_reward").get<double>();
    r.understanding_reward = j.at("understanding_reward").get<double>();
    r.kl = j.at("kl").get<double>();
    r.loss = j.at("loss").get<double>();
    r.grad_norm = j.at("grad_norm").get<double>();
    r.logprob_max_diff = j.at("logprob_max_diff").get<double>();
    r.rollout_s = j.at("rollout_s").get<double>();
    r.score_s = j.at("score_s").get<double>();
    r.update_s = j.at("update_s").get<double>();
    r.sync_s = j.at("sync_s").get<double>();
    r.samples = j.at("samples").get<int64_t>();
    // Added with the asynchronous mode: older logs lack them.
    r.wait_s = j.value("wait_s", 0.0);
    r.max_sample_lag = j.value("max_sample_lag", int64_t{0});
    r.samples_dropped_stale = j.value("samples_dropped_stale", int64_t{0});
    r.logprob_samples_checked = j.value("logprob_samples_checked", int64_t{0});
    if (j.contains("checksum")) r.checksum = j.at("checksum").get<uint64_t>();
    if (j.contains("eval_generation"))
      r.eval_generation = j.at("eval_generation").get<double>();
    if (j.contains("eval_understanding"))
      r.eval_understanding = j.at("eval_understanding").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("step record: ", e.what()));
  }
  return r;
}

absl::StatusOr<std::vector<StepRecord>> ReadStepRecords(const std::string& path,
                                                        int* skipped) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<StepRecord> out;
  int bad = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto r = StepRecordFromJson(
        nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
    if (r.ok()) {
      out.push_back(*r);
    } else {
      ++bad;
    }
  }
  if (skipped != nullptr) *skipped = bad;
  return out;
}

}  // namespace duet
