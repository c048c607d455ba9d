#include "tools/oracle_reward.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/eval/oracle.h"
#include "common/world/caption.h"

namespace duet {
namespace {

absl::Status Field(size_t i, const char* field, const absl::Status& s) {
  return absl::InvalidArgumentError(
      absl::StrCat("queries[", i, "].", field, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::vector<double>> OracleRewards(
    const world::ModelBundle& bundle, const std::vector<RewardQuery>& queries) {
  std::vector<double> out;
  out.reserve(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    const RewardQuery& q = queries[i];
    if (q.task == Task::kGeneration) {
      absl::StatusOr<std::string> text = bundle.DecodeCaption(q.input);
      if (!text.ok()) return Field(i, "input", text.status());
      absl::StatusOr<world::Caption> prompt = world::ParseCaption(*text);
      if (!prompt.ok()) return Field(i, "input", prompt.status());
      absl::StatusOr<world::Image> image = bundle.DecodeImage(q.output);
      if (!image.ok()) return Field(i, "output", image.status());
      out.push_back(eval::ScoreGeneration(*prompt, *image, bundle.world).correct ? 1.0
                                                                                 : 0.0);
    } else {
      absl::StatusOr<world::Image> image = bundle.DecodeImage(q.input);
      if (!image.ok()) return Field(i, "input", image.status());
      absl::StatusOr<std::string> text = bundle.DecodeCaption(q.output);
      if (!text.ok()) return Field(i, "output", text.status());
      const eval::ParsedScene truth = eval::ParseImage(*image, bundle.world);
      out.push_back(eval::ScoreUnderstanding(truth.scene, *text).correct ? 1.0 : 0.0);
    }
  }
  return out;
}

}  // namespace duet
