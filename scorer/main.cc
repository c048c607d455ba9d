// duet-scorer: a scorer worker. Pulls score items from the learner and computes the
// reversed-pair self-rewards with one batched teacher-forced pass (more for the reward
// kinds that need the null-input or forward pass).
#include <cstdio>
#include <string>

#include <gflags/gflags.h>

#include "model/reward_kind.h"
#include "scorer/handler.h"
#include "worker/worker_main.h"

namespace {

bool ValidRewardKind(const char* flag, const std::string& value) {
  const absl::StatusOr<duet::RewardKind> k = duet::ParseRewardKind(value);
  if (!k.ok()) std::fprintf(stderr, "--%s: %s\n", flag, std::string(k.status().message()).c_str());
  return k.ok();
}

}  // namespace

// Defaults: the default recipe's kinds. `duet local` passes the recipe's self_reward; a
// scorer started by hand for another recipe must be given its kinds.
DEFINE_string(image_reward, std::string(duet::RewardKindName(duet::kDefaultSelfRewardKinds.image)),
              "reward kind of generated images: likelihood, pmi, pmi_worst or joint (recipe self_reward.image)");
DEFINE_string(caption_reward, std::string(duet::RewardKindName(duet::kDefaultSelfRewardKinds.caption)),
              "reward kind of sampled captions: likelihood, pmi, pmi_worst or joint (recipe self_reward.caption)");
DEFINE_validator(image_reward, &ValidRewardKind);
DEFINE_validator(caption_reward, &ValidRewardKind);

int main(int argc, char** argv) {
  return duet::WorkerBinaryMain(
      argc, argv, duet::v1::ROLE_SCORER,
      "duet-scorer --learner=HOST:PORT --model=DIR [--auth_token_file=F] [--capacity=N] "
      "[--image_reward=KIND] [--caption_reward=KIND]",
      [](const duet::TokenLayout& layout, int64_t max_batch) -> duet::WorkHandler {
        // The flags are parsed (and validated) before the handler is made.
        const duet::SelfRewardKinds kinds{*duet::ParseRewardKind(FLAGS_image_reward),
                                          *duet::ParseRewardKind(FLAGS_caption_reward)};
        return [layout, max_batch, kinds](const duet::Transformer& model, int64_t /*version*/,
                                          const duet::v1::WorkItem& item, duet::v1::CompleteWorkRequest* result) {
          return duet::HandleScoreItem(model, layout, max_batch, item, result, kinds);
        };
      });
}
