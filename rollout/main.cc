// duet-rollout: a rollout worker. Pulls rollout items from the learner and samples K
// outputs per input with the batched KV-cached decoder (CFG for images).
#include "common/worker/worker_main.h"
#include "rollout/handler.h"

int main(int argc, char** argv) {
  return duet::WorkerBinaryMain(
      argc, argv, duet::v1::ROLE_ROLLOUT,
      "duet-rollout --learner=HOST:PORT --model=DIR [--auth_token_file=F] [--capacity=N]",
      [](const duet::TokenLayout& layout, int64_t max_batch) -> duet::WorkHandler {
        return [layout, max_batch](const duet::Transformer& model, int64_t version,
                                   const duet::v1::WorkItem& item,
                                   duet::v1::CompleteWorkRequest* result) {
          return duet::HandleRolloutItem(model, layout, version, max_batch, item, result);
        };
      });
}
