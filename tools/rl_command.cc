// `duet rl`: dual self-reward RL in one process (the library-level loop: rollout, scoring
// and the update call each other directly, no gRPC, no broadcast). Used for quick
// experiments and as the baseline of the distributed-overhead benchmark.

#include <cstdio>
#include <fstream>
#include <thread>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "learner/policy_update.h"
#include "learner/rl_data.h"
#include "learner/rl_loop.h"
#include "rollout/sampler.h"
#include "scorer/self_reward.h"
#include "tools/commands.h"
#include "tools/progress.h"
#include "tools/shapes_eval.h"
#include "world/bundle.h"
#include "world/dataset.h"
#include "world/png_io.h"

DECLARE_string(model);
DECLARE_string(data);
DECLARE_string(out);
DECLARE_uint64(seed);
DECLARE_int32(threads);

DEFINE_int64(rl_steps, 150, "rl: optimizer steps");
DEFINE_int64(k, 8, "rl: samples per input (group size)");
DEFINE_int64(gen_inputs, 16, "rl: generation prompts per step (0 = understanding only)");
DEFINE_int64(und_inputs, 0, "rl: understanding images per step (0 = generation only)");
DEFINE_string(algorithm, "grpo", "rl: grpo or simpo");
DEFINE_double(rl_lr, 1e-4, "rl: learning rate");
DEFINE_double(kl_coef, 0.1, "rl: GRPO KL coefficient (k3 estimator, frozen reference)");
DEFINE_double(clip_eps, 0.2, "rl: GRPO ratio clip");
DEFINE_double(simpo_beta, 2.0, "rl: SimPO beta");
DEFINE_double(simpo_gamma, 1.0, "rl: SimPO margin gamma");
DEFINE_double(rl_cfg_scale, 1.5, "rl: guidance scale for rollout images");
DEFINE_double(rl_temperature, 1.0, "rl: sampling temperature of rollouts (both directions)");
DEFINE_bool(frozen_scorer, false, "rl: score with the frozen base weights instead of the policy");
DEFINE_int64(eval_every, 0, "rl: evaluate every N steps (0 = before and after only)");

namespace duet {
namespace {

absl::Status RunRlImpl() {
  const std::string out = FLAGS_out.empty() ? "out/rl" : FLAGS_out;
  DUET_RETURN_IF_ERROR(MakeDirs(out));
  DUET_ASSIGN_OR_RETURN(world::ModelBundle bundle, world::LoadBundle(FLAGS_model));
  DUET_ASSIGN_OR_RETURN(Transformer reference, Transformer::Load(FLAGS_model));
  const TokenLayout& layout = bundle.layout;

  TokenRows prompts, images;
  DUET_RETURN_IF_ERROR(LoadRlInputs(bundle, FLAGS_data, &prompts, &images));

  EvalOptions eval = EvalOptionsFromFlags(FLAGS_data);
  eval.report_dir = JoinPath(out, "eval-before");
  DUET_ASSIGN_OR_RETURN(EvalResult before, RunShapesEval(bundle, eval));
  std::printf("before RL:\n%s\n", before.table.c_str());

  RlOptimizerOptions opt;
  if (FLAGS_algorithm == "simpo") {
    opt.algorithm = RlAlgorithm::kSimpo;
  } else if (FLAGS_algorithm != "grpo") {
    return absl::InvalidArgumentError("--algorithm must be grpo or simpo");
  }
  opt.lr = FLAGS_rl_lr;
  opt.grpo.kl_coef = FLAGS_kl_coef;
  opt.grpo.clip_eps = FLAGS_clip_eps;
  opt.simpo.beta = FLAGS_simpo_beta;
  opt.simpo.gamma = FLAGS_simpo_gamma;
  PolicyUpdater updater(&bundle.model, &reference, layout, opt);
  int64_t version = 0;
  InProcessRollout rollout(&bundle.model, layout, &version);
  InProcessScorer scorer(FLAGS_frozen_scorer ? &reference : &bundle.model, layout);
  RlRecipe recipe;
  recipe.generation_inputs = FLAGS_gen_inputs;
  recipe.understanding_inputs = FLAGS_und_inputs;
  recipe.k = FLAGS_k;
  recipe.cfg_scale = FLAGS_rl_cfg_scale;
  recipe.image_sampling.temperature = FLAGS_rl_temperature;
  recipe.caption_sampling.temperature = FLAGS_rl_temperature;
  recipe.seed = FLAGS_seed;
  RlLoop loop(&updater, &rollout, &scorer, prompts, images, recipe, &version);

  nlohmann::json curve = nlohmann::json::array();
  ProgressBar bar("rl", FLAGS_rl_steps, /*log_every=*/1);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t samples = 0;
  for (int64_t step = 0; step < FLAGS_rl_steps; ++step) {
    DUET_ASSIGN_OR_RETURN(StepReport r, loop.RunStep(step));
    samples += r.samples;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.Update(step + 1,
               absl::StrFormat("r_gen %.3f r_und %.3f kl %.4f loss %.4f %.1f samples/s v%d dlogp %.1e",
                               r.generation_reward, r.understanding_reward, r.update.loss.kl,
                               r.update.loss.loss, samples / elapsed, r.policy_version, r.logprob_max_diff),
               elapsed);
    nlohmann::json point = {{"step", step + 1}, {"generation_reward", r.generation_reward},
                            {"understanding_reward", r.understanding_reward}, {"kl", r.update.loss.kl},
                            {"loss", r.update.loss.loss}, {"grad_norm", r.update.grad_norm},
                            {"logprob_max_diff", r.logprob_max_diff}, {"rollout_s", r.rollout_seconds},
                            {"score_s", r.score_seconds}, {"update_s", r.update_seconds}};
    if (FLAGS_eval_every > 0 && (step + 1) % FLAGS_eval_every == 0 && step + 1 < FLAGS_rl_steps) {
      EvalOptions mid = eval;
      mid.report_dir.clear();
      DUET_ASSIGN_OR_RETURN(EvalResult e, RunShapesEval(bundle, mid));
      point["eval_generation"] = e.generation_accuracy;
      point["eval_understanding"] = e.understanding_accuracy;
      std::fprintf(stderr, "eval at step %ld: generation %.1f%% understanding %.1f%%\n",
                   static_cast<long>(step + 1), 100 * e.generation_accuracy, 100 * e.understanding_accuracy);
    }
    curve.push_back(point);
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
  DUET_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(out, "rl_report.json"), summary.dump(2)));
  return world::SaveBundle(JoinPath(out, "model"), bundle);
}

}  // namespace

int RunRl() {
  SetLibTorchThreads();
  absl::Status s = RunRlImpl();
  if (!s.ok()) {
    std::fprintf(stderr, "duet rl: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace duet
