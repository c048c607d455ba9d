#ifndef DUET_LEARNER_RECIPE_H_
#define DUET_LEARNER_RECIPE_H_

// A run's recipe: a YAML file (see configs/recipes/*.yaml) whose every key is optional,
// with defaults below. Flags of the same name override it (duet-learner --help).
//
//   model: out/base/model        # base checkpoint folder (the frozen reference too)
//   data: out/data               # rl_gen_prompts.jsonl, rl_und_images.jsonl
//   out: out/run                 # checkpoints/, model/, metrics.jsonl
//   steps: 120
//   algorithm: grpo              # or simpo
//   directions: joint            # joint, generation or understanding
//   generation_inputs: 16        # prompts per step (joint/generation)
//   understanding_inputs: 8      # images per step (joint/understanding)
//   k: 8
//   lr: 2.0e-4
//   grpo: {clip_eps: 0.2, kl_coef: 0.02}
//   simpo: {beta: 2.0, gamma: 1.0}
//   sampling: {temperature: 1.0, top_k: 0, top_p: 1.0, cfg_scale: 3.0}
//   sync_every: 1                # broadcast weights every N updates
//   bucket_mb: 32
//   checkpoint_every: 20
//   frozen_scorer: false
//   seed: 1
//   workers: {rollout: 2, scorer: 1}
//   collective: gloo             # gloo (CPU) or nccl (CUDA builds)

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "learner/policy_update.h"
#include "learner/rl_loop.h"

namespace duet {

struct Recipe {
  std::string model = "out/base/model";
  std::string data = "out/data";
  std::string out = "out/run";
  int64_t steps = 120;
  std::string directions = "joint";
  RlRecipe rl;
  RlOptimizerOptions optimizer;
  int64_t sync_every = 1;
  int64_t bucket_mb = 32;
  int64_t checkpoint_every = 20;
  bool frozen_scorer = false;
  int32_t rollout_workers = 2;
  int32_t scorer_workers = 1;
  std::string collective = "gloo";

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

// Parses YAML text on top of the defaults. InvalidArgument naming an unknown key, a
// mistyped value or a YAML syntax error (with its line).
absl::StatusOr<Recipe> ParseRecipe(const std::string& yaml_text);
absl::StatusOr<Recipe> LoadRecipe(const std::string& path);
// The recipe as YAML (what a run records next to its checkpoints).
std::string RecipeToYaml(const Recipe& recipe);

}  // namespace duet

#endif  // DUET_LEARNER_RECIPE_H_
