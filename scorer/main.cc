// duet-scorer: a scorer worker. Pulls score items from the learner and computes the
// reversed-pair self-rewards with one batched teacher-forced pass (more for the reward
// kinds that need the null-input or forward pass), or calls an external duet.v1.Reward
// service, or mixes both (recipe key `reward`; `duet local` passes it as the
// --self_reward_weight/--external_reward_* flags).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "model/reward_kind.h"
#include "rpc/reward_service.h"
#include "rpc/rpc_util.h"
#include "scorer/handler.h"
#include "worker/worker_main.h"

namespace {

bool ValidRewardKind(const char* flag, const std::string& value) {
  const absl::StatusOr<duet::RewardKind> k = duet::ParseRewardKind(value);
  if (!k.ok()) std::fprintf(stderr, "--%s: %s\n", flag, std::string(k.status().message()).c_str());
  return k.ok();
}

bool FiniteWeight(const char* flag, double value) {
  if (!std::isfinite(value)) std::fprintf(stderr, "--%s: must be finite\n", flag);
  return std::isfinite(value);
}

}  // namespace

// Defaults: the default recipe's kinds. `duet local` passes the recipe's self_reward; a
// scorer started by hand for another recipe must be given its kinds.
DEFINE_string(image_reward, std::string(duet::RewardKindName(duet::kDefaultSelfRewardKinds.image)),
              "reward kind of generated images: likelihood, pmi, pmi_worst, joint or contrast (recipe self_reward.image)");
DEFINE_string(caption_reward, std::string(duet::RewardKindName(duet::kDefaultSelfRewardKinds.caption)),
              "reward kind of sampled captions: likelihood, pmi, pmi_worst, joint or contrast (recipe self_reward.caption)");
DEFINE_validator(image_reward, &ValidRewardKind);
DEFINE_validator(caption_reward, &ValidRewardKind);
// The recipe's `reward` key (model/reward_kind.h RewardMix): the reward is
// self_reward_weight * self-reward + external_reward_weight * the external score.
DEFINE_double(self_reward_weight, 1.0, "weight of the self-reward (recipe reward.self)");
DEFINE_double(external_reward_weight, 0.0,
              "weight of the external reward service's score (recipe reward.external); 0: never called");
DEFINE_validator(self_reward_weight, &FiniteWeight);
DEFINE_validator(external_reward_weight, &FiniteWeight);
DEFINE_string(external_reward_address, "", "HOST:PORT of the duet.v1.Reward service (recipe reward.external_address)");
DEFINE_int64(external_reward_timeout_ms, 30000, "deadline of each call to the reward service (recipe reward.timeout_ms)");
DEFINE_string(external_reward_auth_token_file, "",
              "file holding the reward service's shared token (recipe reward.auth_token_file); empty: none sent");
DEFINE_string(external_reward_tls_ca, "", "PEM CA of the reward service's certificate (enables TLS to it)");

int main(int argc, char** argv) {
  return duet::WorkerBinaryMain(
      argc, argv, duet::v1::ROLE_SCORER,
      "duet-scorer --learner=HOST:PORT --model=DIR [--auth_token_file=F] [--capacity=N] "
      "[--image_reward=KIND] [--caption_reward=KIND] [--self_reward_weight=W] [--external_reward_weight=W "
      "--external_reward_address=HOST:PORT [--external_reward_auth_token_file=F]]",
      [](const duet::TokenLayout& layout, int64_t max_batch) -> duet::WorkHandler {
        // The flags are parsed (and validated) before the handler is made.
        duet::ScorerRewards rewards;
        rewards.kinds = {*duet::ParseRewardKind(FLAGS_image_reward), *duet::ParseRewardKind(FLAGS_caption_reward)};
        rewards.self_weight = FLAGS_self_reward_weight;
        rewards.external_weight = FLAGS_external_reward_weight;
        // A misconfigured reward fails every item with its error (the learner stops the
        // run with it): never a silent self-reward or zero in its place.
        absl::Status setup = duet::ValidateRewardMix({FLAGS_self_reward_weight, FLAGS_external_reward_weight,
                                                      FLAGS_external_reward_address, FLAGS_external_reward_timeout_ms,
                                                      FLAGS_external_reward_auth_token_file});
        std::shared_ptr<duet::RewardClient> client;
        if (setup.ok() && rewards.external_weight != 0.0) {
          // Only the reward service's own file: never the learner's token (DUET_AUTH_TOKEN).
          absl::StatusOr<std::string> token =
              FLAGS_external_reward_auth_token_file.empty()
                  ? absl::StatusOr<std::string>(std::string())
                  : duet::ResolveAuthToken(/*token_flag=*/"", FLAGS_external_reward_auth_token_file);
          if (token.ok()) {
            duet::RewardClient::Options o;
            o.address = FLAGS_external_reward_address;
            o.auth_token = *token;
            o.timeout = absl::Milliseconds(FLAGS_external_reward_timeout_ms);
            o.security.ca_file = FLAGS_external_reward_tls_ca;
            absl::StatusOr<std::unique_ptr<duet::RewardClient>> c = duet::RewardClient::Create(o);
            if (c.ok()) client = std::move(*c);
            setup = c.status();
          } else {
            setup = token.status();
          }
        }
        if (!setup.ok()) {
          setup = absl::Status(setup.code(), absl::StrCat("scorer reward flags: ", setup.message()));
          LOG(ERROR) << setup;
        }
        rewards.external = client.get();
        return [layout, max_batch, rewards, client, setup](const duet::Transformer& model, int64_t /*version*/,
                                                           const duet::v1::WorkItem& item,
                                                           duet::v1::CompleteWorkRequest* result) {
          if (!setup.ok()) return setup;
          return duet::HandleScoreItem(model, layout, max_batch, item, result, rewards);
        };
      },
      {{"reward", {"image_reward", "caption_reward", "self_reward_weight", "external_reward_weight",
                   "external_reward_address", "external_reward_timeout_ms", "external_reward_auth_token_file",
                   "external_reward_tls_ca"}}});
}
