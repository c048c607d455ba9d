// `duet rl`: dual self-reward RL in one process (the library-level loop: rollout, scoring
// and the update call each other directly, no gRPC, no broadcast). Used for quick
// experiments and as the baseline of the distributed-overhead benchmark.

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_format.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/rpc/reward_service.h"
#include "common/rpc/rpc_util.h"
#include "common/world/bundle.h"
#include "common/world/dataset.h"
#include "common/world/png_io.h"
#include "learner/policy_update.h"
#include "learner/recipe.h"
#include "learner/rl_data.h"
#include "learner/rl_loop.h"
#include "learner/step_record.h"
#include "rollout/sampler.h"
#include "scorer/handler.h"
#include "scorer/self_reward.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/shapes_eval.h"

DECLARE_string(model);
DECLARE_string(data);
DECLARE_string(out);
DECLARE_uint64(seed);
DECLARE_int32(threads);

DECLARE_string(recipe);

// Overrides of the recipe (defaults: the recipe's, learner/recipe.h).
DEFINE_int64(rl_steps, duet::Recipe().steps, "rl: optimizer steps (recipe.steps)");
DEFINE_int64(k, duet::Recipe().rl.k, "rl: samples per input, the group size (recipe.k)");
DEFINE_int64(
    gen_inputs, duet::Recipe().rl.generation_inputs,
    "rl: generation prompts per step (recipe.generation_inputs; 0 = understanding only)");
DEFINE_int64(und_inputs, 0,
             "rl: understanding images per step (0 = generation only; >0 trains both or "
             "understanding)");
DEFINE_string(algorithm, "grpo", "rl: grpo or simpo (recipe.algorithm)");
DEFINE_double(rl_lr, duet::Recipe().optimizer.lr, "rl: learning rate (recipe.lr)");
DEFINE_double(kl_coef, duet::Recipe().optimizer.grpo.kl_coef,
              "rl: GRPO KL coefficient, k3 estimator against the frozen base "
              "(recipe.grpo.kl_coef)");
DEFINE_double(clip_eps, duet::Recipe().optimizer.grpo.clip_eps,
              "rl: GRPO ratio clip (recipe.grpo.clip_eps)");
DEFINE_double(simpo_beta, duet::Recipe().optimizer.simpo.beta,
              "rl: SimPO beta (recipe.simpo.beta)");
DEFINE_double(simpo_gamma, duet::Recipe().optimizer.simpo.gamma,
              "rl: SimPO margin gamma (recipe.simpo.gamma)");
DEFINE_double(rl_cfg_scale, duet::Recipe().rl.cfg_scale.value_or(0),
              "rl: guidance scale for rollout images (recipe.sampling.cfg_scale)");
DEFINE_double(rl_temperature, duet::Recipe().rl.image_sampling.temperature,
              "rl: sampling temperature of rollouts, both directions "
              "(recipe.sampling.temperature)");
DEFINE_bool(frozen_scorer, duet::Recipe().frozen_scorer,
            "rl: score with the frozen base weights instead of the policy "
            "(recipe.frozen_scorer)");
DEFINE_int64(eval_every, 0, "rl: evaluate every N steps (0 = before and after only)");

namespace duet {
namespace {

// The score backend of `duet rl` for a reward mix (scorer/handler.h
// ComputeScorerRewards).
class MixedRewardScorer : public ScoreBackend {
 public:
  MixedRewardScorer(const Transformer* model, TokenLayout layout, ScorerRewards rewards)
      : model_(model), layout_(layout), rewards_(rewards) {}
  absl::StatusOr<std::vector<double>> Score(const std::vector<RewardQuery>& queries,
                                            int64_t /*policy_version*/) override {
    return ComputeScorerRewards(*model_, layout_, queries, /*max_batch=*/256, rewards_);
  }

 private:
  const Transformer* model_;
  TokenLayout layout_;
  ScorerRewards rewards_;
};

}  // namespace

namespace {

bool Given(const char* flag) {
  return !gflags::GetCommandLineFlagInfoOrDie(flag).is_default;
}

// The run's recipe: --recipe when given (else the built-in defaults) with its --set keys,
// then the flags.
absl::StatusOr<Recipe> RecipeFromFlags() {
  Recipe recipe;
  if (Given("recipe")) {
    DUET_ASSIGN_OR_RETURN(recipe, LoadRecipe(FLAGS_recipe, RecipeSettings()));
  } else if (!RecipeSettings().empty()) {  // the built-in defaults with the settings
    DUET_ASSIGN_OR_RETURN(recipe, ParseRecipe("", RecipeSettings()));
  }
  RecipeOverrides o;
  if (Given("model")) o.model = FLAGS_model;
  if (Given("data")) o.data = FLAGS_data;
  if (Given("rl_steps")) o.steps = FLAGS_rl_steps;
  if (Given("k")) o.k = FLAGS_k;
  if (Given("gen_inputs")) o.generation_inputs = FLAGS_gen_inputs;
  if (Given("und_inputs")) o.understanding_inputs = FLAGS_und_inputs;
  if (Given("gen_inputs") || Given("und_inputs")) {
    const int64_t g =
        Given("gen_inputs") ? FLAGS_gen_inputs : recipe.rl.generation_inputs;
    const int64_t u = Given("und_inputs") ? FLAGS_und_inputs : 0;
    o.directions = g > 0 && u > 0 ? "joint" : (u > 0 ? "understanding" : "generation");
  }
  if (Given("algorithm")) o.algorithm = FLAGS_algorithm;
  if (Given("rl_lr")) o.lr = FLAGS_rl_lr;
  if (Given("kl_coef")) o.kl_coef = FLAGS_kl_coef;
  if (Given("clip_eps")) o.clip_eps = FLAGS_clip_eps;
  if (Given("simpo_beta")) o.simpo_beta = FLAGS_simpo_beta;
  if (Given("simpo_gamma")) o.simpo_gamma = FLAGS_simpo_gamma;
  if (Given("rl_cfg_scale")) o.cfg_scale = FLAGS_rl_cfg_scale;
  if (Given("rl_temperature")) o.temperature = FLAGS_rl_temperature;
  if (Given("frozen_scorer")) o.frozen_scorer = FLAGS_frozen_scorer;
  if (Given("seed")) o.seed = FLAGS_seed;
  DUET_RETURN_IF_ERROR(ApplyOverrides(o, &recipe));
  return recipe;
}

absl::Status RunRlImpl() {
  DUET_ASSIGN_OR_RETURN(const Recipe r, RecipeFromFlags());
  const std::string out = FLAGS_out.empty() ? "out/rl" : FLAGS_out;
  // What the run reads is checked before --out is touched: a typo fails with nothing
  // written.
  DUET_ASSIGN_OR_RETURN(world::ModelBundle bundle, world::LoadBundle(r.model));
  DUET_ASSIGN_OR_RETURN(Transformer reference, Transformer::Load(r.model));
  const TokenLayout& layout = bundle.layout;

  TokenRows prompts, images;
  DUET_RETURN_IF_ERROR(LoadRlInputs(bundle, r.data, &prompts, &images));
  DUET_RETURN_IF_ERROR(MakeDirs(out));

  EvalOptions eval = EvalOptionsFromFlags(r.data);
  eval.report_dir = JoinPath(out, "eval-before");
  DUET_ASSIGN_OR_RETURN(EvalResult before, RunShapesEval(bundle, eval));
  std::printf("before RL:\n%s\n", before.table.c_str());

  DUET_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(out, "recipe.yaml"), RecipeToYaml(r)));
  PolicyUpdater updater(&bundle.model, &reference, layout, r.optimizer);
  InProcessRollout rollout(&bundle.model, layout);
  InProcessScorer self_scorer(r.frozen_scorer ? &reference : &bundle.model, layout,
                              r.self_reward);
  // A recipe's reward mix other than the self-reward alone: the same computation as
  // duet-scorer's (scorer/handler.h), with its own client of the reward service.
  std::unique_ptr<MixedRewardScorer> mixed;
  ScorerRewardSetup setup;  // owns the reward service's client
  if (!r.reward.IsSelfOnly()) {
    DUET_ASSIGN_OR_RETURN(
        setup, MakeScorerRewards(r.self_reward, r.reward, r.reward.auth_token_file,
                                 /*tls_ca_file=*/""));
    mixed = std::make_unique<MixedRewardScorer>(
        r.frozen_scorer ? &reference : &bundle.model, layout, setup.rewards);
  }
  ScoreBackend& scorer = mixed ? static_cast<ScoreBackend&>(*mixed) : self_scorer;
  RlRecipe loop_recipe = r.LoopRecipe();
  loop_recipe.max_lag = 0;  // one process: the rollouts always use the current weights
  RlLoop loop(&updater, &rollout, &scorer, prompts, images, loop_recipe);

  nlohmann::json curve = nlohmann::json::array();
  ProgressBar bar("rl", r.steps, /*log_every=*/1);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t samples = 0;
  for (int64_t step = 0; step < r.steps; ++step) {
    DUET_ASSIGN_OR_RETURN(StepReport report, loop.RunStep(step));
    samples += report.samples;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.Update(
        step + 1,
        absl::StrFormat(
            "r_gen %.3f r_und %.3f kl %.4f loss %.4f %.1f samples/s v%d dlogp %.1e",
            report.generation_reward, report.understanding_reward, report.update.loss.kl,
            report.update.loss.loss, samples / elapsed, report.policy_version,
            report.logprob_max_diff),
        elapsed);
    StepRecord point = StepRecord::FromReport(report);
    if (FLAGS_eval_every > 0 && (step + 1) % FLAGS_eval_every == 0 &&
        step + 1 < r.steps) {
      EvalOptions mid = eval;
      mid.report_dir.clear();
      DUET_ASSIGN_OR_RETURN(EvalResult e, RunShapesEval(bundle, mid));
      point.eval_generation = e.generation_accuracy;
      point.eval_understanding = e.understanding_accuracy;
      std::fprintf(stderr, "eval at step %ld: generation %.1f%% understanding %.1f%%\n",
                   static_cast<long>(step + 1), 100 * e.generation_accuracy,
                   100 * e.understanding_accuracy);
    }
    curve.push_back(StepRecordToJson(point));
  }
  eval.report_dir = JoinPath(out, "eval-after");
  DUET_ASSIGN_OR_RETURN(EvalResult after, RunShapesEval(bundle, eval));
  std::printf("after RL:\n%s\n", after.table.c_str());
  std::printf("generation %.1f%% -> %.1f%%, understanding %.1f%% -> %.1f%%\n",
              100 * before.generation_accuracy, 100 * after.generation_accuracy,
              100 * before.understanding_accuracy, 100 * after.understanding_accuracy);
  nlohmann::json summary = {{"before", nlohmann::json::parse(before.report_json)},
                            {"after", nlohmann::json::parse(after.report_json)},
                            {"curve", curve}};
  DUET_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(out, "rl_report.json"), summary.dump(2)));
  return world::SaveBundle(JoinPath(out, "model"), bundle);
}

}  // namespace

int RunRl() { return RunCommand("rl", RunRlImpl); }

}  // namespace duet
