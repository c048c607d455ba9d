#ifndef DUET_LEARNER_RL_LOOP_H_
#define DUET_LEARNER_RL_LOOP_H_

// One RL step of dual self-reward training, independent of transport:
//   1. pick this step's generation prompts and understanding images (a pure function of
//      the step, so a resumed run sees the same data);
//   2. rollout: K samples per input through the RolloutBackend;
//   3. scoring: reverse every (input, sample) pair through the ScoreBackend;
//   4. learner: advantages / preference pairs and one optimizer step.
// Steps 1-3 are the step's *collection*, step 4 its *training*. The same loop drives the
// in-process trainer and the distributed learner, whose backends are gRPC worker pools.
//
// Synchronous mode (recipe.collect_ahead 0, the default): a step collects, then trains;
// nothing runs concurrently and a run is deterministic.
// Asynchronous mode (collect_ahead N > 0): the collections of steps s+1 .. s+N run, each
// on a thread of its own, while step s trains. A collection is requested at the policy
// version of the moment it starts and its samples say which version produced them; at
// training time a group with a sample older than version() - recipe.max_lag is dropped
// (counted in the report, never trained on). Collections still in flight when the loop
// goes away are abandoned (a resumed run collects them again: inputs and seeds are a pure
// function of the step).
//
// Thread-safety: RunStep and version() from one training thread. In asynchronous mode
// the backends are called from the collection threads, several at once: they must be
// thread-safe then.

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/generation.h"
#include "common/work/task.h"
#include "learner/ledger.h"
#include "learner/policy_update.h"

namespace duet {

struct RlRecipe {
  int64_t generation_inputs = 16;    // prompts per step (0 = understanding only)
  int64_t understanding_inputs = 8;  // images per step (0 = generation only)
  int64_t k = 8;                     // samples per input
  SamplingParams image_sampling;
  std::optional<double> cfg_scale = 1.5;
  SamplingParams caption_sampling;
  int64_t consistency_samples = 4;  // samples re-scored each step for the log-prob check
  uint64_t seed = 1;
  // How many versions a sample may lag the policy; a group with an older sample is
  // dropped at training time. Synchronous mode: 0 when the rollout workers get new
  // weights after every update (or share them), sync_every - 1 otherwise. Asynchronous
  // mode: the recipe's max_lag (Recipe::LoopRecipe).
  int64_t max_lag = 0;
  // Asynchronous mode when > 0: the collections (rollout and scoring) of this many steps
  // ahead run while a step trains. 0: synchronous. A collection dispatched at version v
  // is trained at v + collect_ahead at the latest, so max_lag >= collect_ahead keeps
  // every sample of a healthy run.
  int64_t collect_ahead = 0;
};

// Per direction, what a step trained on and how its rewards were spread (metrics only).
struct DirectionStats {
  int64_t samples = 0;
  int64_t groups = 0;
  int64_t tokens = 0;                     // output tokens of the samples
  double reward_std = 0;                  // over all samples
  double reward_group_std = 0;            // mean over groups of the within-group std
  double zero_variance_groups_ratio = 0;  // groups whose K rewards are all equal
  double advantage_std = 0;               // of the GRPO group-relative advantages
  int64_t samples_dropped_stale = 0;  // in groups older than the lag bound (not above)
};
// The stats of the groups of `task` (rewards set). Pure: no RNG, no model.
DirectionStats ComputeDirectionStats(const std::vector<Group>& groups, Task task);

struct StepReport {
  int64_t step = 0;
  int64_t policy_version = 0;       // after the update
  double generation_reward = 0;     // mean self-reward of generated images
  double understanding_reward = 0;  // mean self-reward of sampled captions
  UpdateStats update;
  // Behaviour vs recomputed log-probs, over the samples drawn at the version being
  // updated (up to recipe.consistency_samples of them): a sample of an older version is
  // not comparable and is skipped. 0 when none was checked.
  double logprob_max_diff = 0;
  int64_t logprob_samples_checked = 0;
  // The step's collection: its rollout and its scoring (in asynchronous mode they ran
  // while earlier steps trained), and how long training waited for it.
  double rollout_seconds = 0;
  double score_seconds = 0;
  double collect_wait_seconds = 0;
  double update_seconds = 0;
  int64_t samples = 0;  // trained on (stale ones excluded)
  DirectionStats generation_stats;
  DirectionStats understanding_stats;
  int64_t max_sample_lag =
      0;  // largest (version - sample's version) among the trained samples
  int64_t samples_dropped_stale = 0;  // both directions
  std::vector<TrainedGroup> trained;  // the groups trained on, for the ledger
};

class RlLoop {
 public:
  // Borrowed pointers must outlive the loop. The loop owns the policy version: it starts
  // at `start_version` (0, or a checkpoint's) and counts the updates applied.
  RlLoop(PolicyUpdater* updater, RolloutBackend* rollout, ScoreBackend* scorer,
         std::vector<std::vector<int64_t>> prompts,
         std::vector<std::vector<int64_t>> images, RlRecipe recipe,
         int64_t start_version = 0);
  // Abandons the collections in flight: waits for their backend calls to return
  // (REQUIRES: they do; LearnerServer closes its work queue first, which ends them) and
  // skips the scoring of those whose rollout is done.
  ~RlLoop();
  RlLoop(const RlLoop&) = delete;
  RlLoop& operator=(const RlLoop&) = delete;

  // Runs step `step` (0-based) and applies one update; the report's policy_version is the
  // new version (version() + 1 on success).
  //
  // Synchronous mode: collects the step at version(), then trains. Asynchronous mode:
  // first makes sure that the collections of steps step .. min(step + collect_ahead,
  // end_step - 1) are under way (those not yet are dispatched now, at version()), then
  // waits for this step's and trains on it. A collection of an earlier step still in
  // flight is abandoned. Call it after the new weights reached the workers, so that the
  // collections it dispatches are requested at the version they will be computed with.
  //
  // Groups with a sample older than version() - recipe.max_lag are dropped and counted
  // (StepReport::samples_dropped_stale); when every group is dropped the step updates
  // nothing (no optimizer step) but the version still advances, one per step. A sample
  // newer than version() fails the step with FailedPrecondition. A failed step changes
  // neither the weights nor the version; its collection is gone (a retry collects again).
  absl::StatusOr<StepReport> RunStep(
      int64_t step, int64_t end_step = std::numeric_limits<int64_t>::max());

  // The policy version: the number of updates applied since the base model.
  int64_t version() const { return version_; }

  // The steps whose collection is in flight (asynchronous mode), in order.
  std::vector<int64_t> CollectionsInFlight() const;

 private:
  // A step's scored groups and how long its two phases took.
  struct Collected {
    std::vector<Group> groups;  // rewards set
    double rollout_seconds = 0;
    double score_seconds = 0;
  };
  // An asynchronous collection: its thread writes `result` and ends; the training thread
  // reads `result` only after joining it.
  struct Collection {
    std::thread thread;             // runs Collect(); joined by RunStep or the destructor
    std::atomic<bool> stop{false};  // abandoned: skip the scoring
    absl::StatusOr<Collected> result = absl::UnknownError("not collected");
  };

  // Rollout then scoring of `step`'s inputs, requested at `version`; Cancelled between
  // the two when `stop` (may be null) is set. Reads only immutable members: safe on a
  // collection thread.
  absl::StatusOr<Collected> Collect(int64_t step, int64_t version,
                                    const std::atomic<bool>* stop) const;
  // Filters `collected` (stale groups out), checks consistency and updates.
  absl::StatusOr<StepReport> Train(int64_t step, Collected collected,
                                   double wait_seconds);
  // `n` inputs of `pool` for `step`; their indices in `pool` go to `indices` when given.
  std::vector<std::vector<int64_t>> Pick(const std::vector<std::vector<int64_t>>& pool,
                                         int64_t n, int64_t step, uint64_t salt,
                                         std::vector<int64_t>* indices = nullptr) const;

  PolicyUpdater* updater_;
  RolloutBackend* rollout_;
  ScoreBackend* scorer_;
  std::vector<std::vector<int64_t>> prompts_;
  std::vector<std::vector<int64_t>> images_;
  const RlRecipe recipe_;
  int64_t version_;
  // Asynchronous collections by step; the training thread's.
  std::map<int64_t, std::unique_ptr<Collection>> in_flight_;
};

}  // namespace duet

#endif  // DUET_LEARNER_RL_LOOP_H_
