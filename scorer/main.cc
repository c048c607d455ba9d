// duet-scorer: a scorer worker. Pulls score items from the learner and computes the
// reversed-pair self-rewards with one batched teacher-forced pass.
#include "scorer/handler.h"
#include "worker/worker_main.h"

int main(int argc, char** argv) {
  return duet::WorkerBinaryMain(
      argc, argv, duet::v1::ROLE_SCORER,
      "duet-scorer --learner=HOST:PORT --model=DIR [--auth_token_file=F] [--capacity=N]",
      [](const duet::TokenLayout& layout, int64_t max_batch) -> duet::WorkHandler {
        return [layout, max_batch](const duet::Transformer& model, int64_t /*version*/,
                                   const duet::v1::WorkItem& item, duet::v1::CompleteWorkRequest* result) {
          return duet::HandleScoreItem(model, layout, max_batch, item, result);
        };
      });
}
