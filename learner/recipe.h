#ifndef DUET_LEARNER_RECIPE_H_
#define DUET_LEARNER_RECIPE_H_

// A run's recipe: a YAML file (see configs/recipes/*.yaml) whose every key is optional.
// The defaults are the struct's below, and they are the measured default recipe
// (configs/recipes/default.yaml spells every one out): one set of defaults for
// duet-learner, `duet local` and `duet rl`. Command-line flags reach a recipe only
// through RecipeOverrides.
//
//   model: out/base/model        # base checkpoint folder (the frozen reference too)
//   data: out/data               # rl_gen_prompts.jsonl, rl_und_images.jsonl
//   out: out/run                 # checkpoints/, model/, metrics.jsonl
//   steps: 150
//   algorithm: grpo              # or simpo
//   directions: joint            # joint, generation or understanding
//   generation_inputs: 16        # prompts per step (joint/generation)
//   understanding_inputs: 8      # images per step (joint/understanding)
//   k: 8
//   lr: 1.0e-4
//   grad_clip: 1.0
//   micro_batch: 64
//   grpo: {clip_eps: 0.2, kl_coef: 0.1, understanding_weight: 1.0}  # weight: of caption
//   advantages simpo: {beta: 2.0, gamma: 1.0} sampling: {temperature: 1.0, top_k: 0,
//   top_p: 1.0, cfg_scale: 1.5} sync_every: 1                # broadcast weights every N
//   updates max_lag: 0                   # 0: synchronous; N: asynchronous, N steps
//   collected ahead bucket_mb: 32 checkpoint_every: 25 lease_seconds: 30            # a
//   worker silent this long is lost; its items go to others faults:
//   {item_deadline_seconds: 60, item_deadline_per_row_seconds: 1.0,
//            quarantine_after: 3, quarantine_cooldown_seconds: 60, poison_workers: 3,
//            sync_grace_seconds: 120}
//   frozen_scorer: true          # the judge: the base weights (true) or the policy's
//   self_reward: {image: likelihood, caption: contrast}   # kinds:
//   common/work/reward_kind.h reward: {self: 1.0, external: 0.0, external_address: "",
//   timeout_ms: 30000, auth_token_file: ""} seed: 1 workers: {rollout: 2, scorer: 1}
//   collective: gloo             # gloo (CPU), nccl (CUDA builds) or none (gRPC stream)
//   broadcast: collective        # or chain (weights down a pipelined chain of workers)
//   wire_dtype: float32          # or bfloat16 (the weights rounded on the wire)

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/work/reward_kind.h"
#include "learner/policy_update.h"
#include "learner/rl_loop.h"

namespace duet {

// The optimizer part of the default recipe: GRPO with a strong KL anchor, a small step.
inline RlOptimizerOptions DefaultRecipeOptimizer() {
  RlOptimizerOptions o;
  o.lr = 1e-4;
  o.grpo.kl_coef = 0.1;
  return o;
}

// How the learner deals with workers that fail or stall (learner/service/work_queue.h and
// remote_backends.h): each rollout or score item is taken back from its worker
// item_deadline_seconds + item_deadline_per_row_seconds * rows after it was pulled
// (rows: inputs * k, or queries; the default is ~60x the items' measured time on the
// tiny model on 2 CPU cores, ~1-2 s); a worker whose errors (and missed deadlines) reach
// quarantine_after in a row is quarantined for quarantine_cooldown_seconds while another
// worker serves its role; an item that failed on poison_workers distinct workers fails
// the run; a worker that has not taken and confirmed a weight sync sync_grace_seconds
// after the broadcast's own timeout (--collective_timeout_s) is dropped from the run (it
// registers again) instead of failing the step. RecipeToYaml writes the key only when it
// is not the default.
struct FaultRecipe {
  double item_deadline_seconds = 60;
  double item_deadline_per_row_seconds = 1.0;
  int32_t quarantine_after = 3;
  double quarantine_cooldown_seconds = 60;
  int32_t poison_workers = 3;
  double sync_grace_seconds = 120;
  bool operator==(const FaultRecipe& o) const {
    return item_deadline_seconds == o.item_deadline_seconds &&
           item_deadline_per_row_seconds == o.item_deadline_per_row_seconds &&
           quarantine_after == o.quarantine_after &&
           quarantine_cooldown_seconds == o.quarantine_cooldown_seconds &&
           poison_workers == o.poison_workers &&
           sync_grace_seconds == o.sync_grace_seconds;
  }
};

struct Recipe {
  std::string model = "out/base/model";
  std::string data = "out/data";
  std::string out = "out/run";
  int64_t steps = 150;
  std::string directions = "joint";
  RlRecipe rl;  // its defaults: 16 prompts, 8 images, k 8, cfg 1.5, seed 1
  RlOptimizerOptions optimizer = DefaultRecipeOptimizer();
  int64_t sync_every = 1;
  // 0: synchronous mode, deterministic: each step collects (rollout, scoring), then
  // trains, then the weights go out. N in [1, kMaxLag]: asynchronous mode: the rollouts
  // and scoring of the next N steps run while a step trains, and a sample more than N
  // versions older than the policy is dropped (counted, never trained on). Requires
  // sync_every 1.
  int64_t max_lag = 0;
  static constexpr int64_t kMaxLag =
      16;  // each step collected ahead holds a thread and its items
  int64_t bucket_mb = 32;
  int64_t checkpoint_every = 25;
  int64_t lease_seconds = 30;
  FaultRecipe faults;
  bool frozen_scorer = true;
  // The scorers' reward kind per direction. The image reward stays the likelihood (joint
  // ranks generated images a little better, but one RL run with it was not clearly
  // better); the caption reward is `contrast`, the best measured (93.3% pairwise
  // agreement with the oracle on the base model; docs/results.md). The learner sends it
  // to every scorer at registration (RegisterResponse.rewards), however the scorer was
  // started.
  SelfRewardKinds self_reward = kDefaultSelfRewardKinds;
  // Where the scorers' rewards come from (common/work/reward_kind.h RewardMix): the
  // weighted sum of the self-reward and an external duet.v1.Reward service's score (e.g.
  // `duet reward-server`, the Shapes oracle). Default: the self-reward alone. Sent to the
  // scorers with self_reward (auth_token_file is a path on the scorer's host: the token
  // itself never travels); `duet rl` computes the same mix in its own process.
  // RecipeToYaml writes the key only when it is not the default (so the default
  // recipe's YAML, and default.yaml, stay as they were).
  RewardMix reward;
  int32_t rollout_workers = 2;
  int32_t scorer_workers = 1;
  std::string collective = "gloo";
  // How the weights travel over the collective (common/weights/weight_sync.h):
  // "collective" (its own broadcast; Gloo's is a binomial tree of full copies) or
  // "chain" (a pipelined chain of point-to-point sends: the root sends each byte once,
  // for large CPU pools; docs/scaling.md).
  std::string broadcast = "collective";
  // The weights' dtype on the wire, broadcast and gRPC stream alike: "float32" (as the
  // learner holds them) or "bfloat16" (rounded: half the bytes; the workers then sample
  // from the rounded weights while the learner trains float32).
  std::string wire_dtype = "float32";

  // InvalidArgument naming the field.
  absl::Status Validate() const;

  // What the RL loop runs: `rl` with the inputs of the directions not trained set to 0;
  // synchronous (max_lag 0): lag bound sync_every - 1, nothing collected ahead;
  // asynchronous: lag bound max_lag and max_lag steps collected ahead.
  RlRecipe LoopRecipe() const;
};

// Command-line overrides of a recipe: each set field replaces the recipe's. Every program
// that takes a recipe fills this from its flags and calls ApplyOverrides, the one place
// flags meet the recipe.
struct RecipeOverrides {
  std::optional<std::string> model, data, out;
  std::optional<int64_t> steps;
  std::optional<std::string> algorithm;  // grpo or simpo
  std::optional<std::string> directions;
  std::optional<int64_t> generation_inputs, understanding_inputs, k;
  std::optional<double> lr, kl_coef, clip_eps, simpo_beta, simpo_gamma;
  std::optional<double> temperature, cfg_scale;  // rollout sampling, both directions
  std::optional<bool> frozen_scorer;
  std::optional<std::string> image_reward, caption_reward;  // RewardKindName()s
  std::optional<uint64_t> seed;
  std::optional<int64_t> sync_every;
  std::optional<int64_t> max_lag;
  std::optional<int32_t> rollout_workers, scorer_workers;
  std::optional<std::string> collective;
};

// Applies `overrides` to `recipe`, then validates it. InvalidArgument naming the field.
absl::Status ApplyOverrides(const RecipeOverrides& overrides, Recipe* recipe);

// Parses YAML text on top of the defaults, with `settings` applied to the text's keys
// first. A setting is "KEY=VALUE", the --set flag that every program taking a recipe
// accepts (duet-learner, duet local, duet rl; repeatable, in order): KEY a recipe key,
// with dots for nesting (steps, grpo.kl_coef, self_reward.caption, workers.rollout),
// VALUE in YAML (3, 0.05, joint, true). InvalidArgument naming an unknown key, a mistyped
// value, a setting without '=' or value, or a YAML syntax error (with its line).
absl::StatusOr<Recipe> ParseRecipe(const std::string& yaml_text,
                                   const std::vector<std::string>& settings = {});
// LoadRecipe: NotFound for a missing file; InvalidArgument for an empty one (only
// whitespace or nothing), besides ParseRecipe's errors.
absl::StatusOr<Recipe> LoadRecipe(const std::string& path,
                                  const std::vector<std::string>& settings = {});
// The recipe as YAML (what a run records next to its checkpoints). `every_key`: also the
// sections a run records only when they differ from the defaults (reward, faults).
std::string RecipeToYaml(const Recipe& recipe, bool every_key = false);
// Every recipe key as --set spells it, with its default: "grpo.kl_coef=0.1", one per
// entry, in the order of RecipeToYaml (for --help).
std::vector<std::string> RecipeKeyDefaults();

}  // namespace duet

#endif  // DUET_LEARNER_RECIPE_H_
