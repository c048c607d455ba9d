// duet-scorer: a scorer worker. Pulls score items from the learner and computes the
// reversed-pair self-rewards with one batched teacher-forced pass (more for the reward
// kinds that need the null-input or forward pass), or calls an external duet.v1.Reward
// service, or mixes both. What it computes is the run's recipe (keys self_reward and
// reward), which the learner sends at every registration (RegisterResponse.rewards): the
// same command line works under duet local, Kubernetes and Slurm. Its flags keep only
// what belongs to the process: the reward service's CA and, optionally, another path to
// its token than the recipe's.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/proto_convert.h"
#include "common/worker/worker_main.h"
#include "scorer/handler.h"

DEFINE_string(external_reward_tls_ca, "",
              "PEM CA of the reward service's certificate (enables TLS to it)");
DEFINE_string(external_reward_auth_token_file, "",
              "file holding the reward service's shared token, instead of the recipe's "
              "reward.auth_token_file "
              "(a path on this host); never the learner's token");

namespace {

// The rewards of the current registration. Written by the registration hook and read by
// the handler, both on the worker's Run() thread; the mutex keeps it so if that changes.
struct RunRewardState {
  absl::Mutex mu;
  absl::StatusOr<duet::ScorerRewardSetup> setup ABSL_GUARDED_BY(mu) =
      absl::FailedPreconditionError(
          "no registration yet: the learner sends the run's rewards");
};

}  // namespace

int main(int argc, char** argv) {
  auto state = std::make_shared<RunRewardState>();
  return duet::WorkerBinaryMain(
      argc, argv, duet::v1::ROLE_SCORER,
      "duet-scorer --learner=HOST:PORT --model=DIR [--auth_token_file=F] [--capacity=N] "
      "[--external_reward_tls_ca=PEM] [--external_reward_auth_token_file=F]",
      [state](const duet::TokenLayout& layout, int64_t max_batch) -> duet::RoleHandlers {
        duet::WorkHandler handler =
            [layout, max_batch, state](
                const duet::Transformer& model, int64_t /*version*/,
                const duet::v1::WorkItem& item, duet::v1::CompleteWorkRequest* result) {
              absl::MutexLock lock(&state->mu);
              // A misconfigured reward fails every item with its error (the learner stops
              // the run with it): never a silent self-reward or zero in its place.
              if (!state->setup.ok()) return state->setup.status();
              return duet::HandleScoreItem(model, layout, max_batch, item, result,
                                           state->setup->rewards);
            };
        auto on_register =
            [state](const duet::v1::RegisterResponse& resp) -> absl::Status {
          absl::StatusOr<duet::RunRewards> run = duet::FromProto(resp.rewards());
          absl::StatusOr<duet::ScorerRewardSetup> setup =
              run.ok()
                  ? duet::MakeScorerRewards(run->kinds, run->mix,
                                            FLAGS_external_reward_auth_token_file.empty()
                                                ? run->mix.auth_token_file
                                                : FLAGS_external_reward_auth_token_file,
                                            FLAGS_external_reward_tls_ca)
                  : absl::StatusOr<duet::ScorerRewardSetup>(run.status());
          if (setup.ok()) {
            LOG(INFO) << "the run's rewards: image "
                      << duet::RewardKindName(run->kinds.image) << ", caption "
                      << duet::RewardKindName(run->kinds.caption) << ", self weight "
                      << run->mix.self << ", external weight " << run->mix.external
                      << (run->mix.external != 0.0
                              ? " (" + run->mix.external_address + ")"
                              : "");
          } else {
            setup = absl::Status(
                setup.status().code(),
                absl::StrCat("the run's reward settings: ", setup.status().message()));
            LOG(ERROR) << setup.status();
          }
          absl::MutexLock lock(&state->mu);
          state->setup = std::move(setup);
          return absl::OkStatus();
        };
        return duet::RoleHandlers(std::move(handler), std::move(on_register));
      },
      {{"reward", {"external_reward_tls_ca", "external_reward_auth_token_file"}}});
}
