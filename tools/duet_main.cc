// `duet`: the command-line front end. Thin: parses the subcommand and flags, then calls
// the library function that does the work.
//
//   duet world make-data --out=DIR            synthetic paired / unpaired / held-out data
//   duet pretrain --data=DIR --out=DIR        supervised base model (resumable)
//   duet eval --model=DIR --data=DIR          ShapesEval: table, JSON report, gallery
//   duet sample --model=DIR --prompt=TEXT --out=PNG | --image=PNG
//   duet dev dump-logits --out_dir=DIR [--model=DIR]   parity-test helper (see tests/)
//   duet reward-server --model=DIR --port=N --auth_token_file=F   the oracle as a reward
//   service duet pool --out=RUN [--rollout=N] [--scorer=N]   scale a running duet local
//   job duet health --address=HOST:PORT [--service=duet.ready]   what a probe sees

#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/base/flag_help.h"
#include "learner/recipe.h"
#include "tools/commands.h"

// Shown by --help; the values are taken out of argv before gflags parses (a gflag keeps
// only the last of a repeated flag): duet::RecipeSettings().
DEFINE_string(set, "",
              "KEY=VALUE: set a recipe key (repeatable; keys and defaults below)");

namespace {

constexpr char kUsage[] =
    "usage: duet <command> [flags]\n"
    "commands:\n"
    "  world make-data   write the Shapes world data sets and image tokenizer\n"
    "  world make-hard-split  add the hard understanding split to a data folder made "
    "earlier\n"
    "  pretrain          supervised pretraining of the base model (resumable)\n"
    "  eval              ShapesEval of a model on the held-out sets\n"
    "  local             the RL run on one machine: learner + worker processes, report\n"
    "  pool              scale the worker pools of a running `duet local` job\n"
    "  rl                dual self-reward RL in one process (library-level loop)\n"
    "  sample            one prompt to a PNG, or one PNG to a caption\n"
    "  dev dump-logits   write a model (--model, else a fixed random one) and its logits "
    "(parity test)\n"
    "  dev reward-agreement  how well self-rewards rank samples, by the oracle\n"
    "  reward-server     the Shapes oracle as a duet.v1.Reward service (an external "
    "reward)\n"
    "  health            what a process's readiness (or liveness) probe sees\n"
    "run `duet <command> --help` for the flags";

// The subcommands: their words, what runs them, and the flags `duet <command> --help`
// shows.
struct Command {
  std::string words;
  int (*run)();
  std::vector<duet::FlagGroup> flags;
};

std::vector<Command> Commands() {
  const duet::FlagGroup eval = {"evaluation (ShapesEval)",
                                {"limit", "eval_seeds", "cfg_scale", "temperature",
                                 "top_k", "top_p", "caption_temperature"}};
  const duet::FlagGroup process = {"process", {"seed", "threads"}};
  // Every recipe key, settable the same way in duet local, duet rl and duet-learner.
  const duet::FlagGroup recipe_keys = {
      "recipe keys (--set KEY=VALUE, repeatable, after --recipe; defaults shown)",
      {"set"},
      duet::RecipeKeyDefaults()};
  return {
      {"world make-data",
       duet::RunMakeData,
       {{"output", {"out"}},
        {"data sets",
         {"sft_pairs", "rl_prompts", "rl_images", "eval_per_category", "mixed_fraction",
          "codebook_size"}},
        process}},
      {"world make-hard-split",
       duet::RunMakeHardSplit,
       {{"data set", {"data", "hard_per_category", "seed"}}}},
      {"pretrain",
       duet::RunPretrain,
       {{"input and output", {"data", "out"}},
        {"training",
         {"preset", "steps", "batch_size", "lr", "understanding_fraction",
          "caption_dropout", "checkpoint_every"}},
        process}},
      {"eval",
       duet::RunEval,
       {{"input and output", {"model", "data", "report_dir"}}, eval, process}},
      {"sample",
       duet::RunSample,
       {{"input and output", {"model", "prompt", "image", "out"}},
        {"sampling",
         {"cfg_scale", "temperature", "top_k", "top_p", "caption_temperature"}},
        process}},
      {"local",
       duet::RunLocal,
       {{"run",
         {"recipe", "model", "data", "out", "resume", "overwrite", "local_steps",
          "rl_seed"}},
        {"processes",
         {"rollout_workers", "scorer_workers", "bin_dir", "metrics_base_port"}},
        recipe_keys,
        eval,
        process}},
      {"pool",
       duet::RunPool,
       {{"job", {"out"}},
        {"desired workers (omit to keep; only print)", {"rollout", "scorer"}}}},
      {"rl",
       duet::RunRl,
       {{"run", {"recipe", "model", "data", "out", "rl_steps", "eval_every"}},
        {"recipe overrides",
         {"algorithm", "gen_inputs", "und_inputs", "k", "rl_lr", "kl_coef", "clip_eps",
          "simpo_beta", "simpo_gamma", "rl_cfg_scale", "rl_temperature",
          "frozen_scorer"}},
        recipe_keys,
        eval,
        process}},
      {"dev dump-logits",
       duet::RunDumpLogits,
       {{"input (default: a fixed random model of --seed)", {"model"}},
        {"output", {"out_dir"}},
        process}},
      {"reward-server",
       duet::RunRewardServer,
       {{"service", {"model", "host", "port", "port_file", "max_concurrent_calls"}},
        {"security",
         {"auth_token_file", "allow_insecure_no_auth", "tls_cert", "tls_key",
          "tls_client_ca"}}}},
      {"health", duet::RunHealth, {{"probe", {"address", "service", "timeout_s"}}}},
      {"dev reward-agreement",
       duet::RunRewardAgreement,
       {{"input", {"model", "data"}},
        {"agreement",
         {"agreement_inputs", "k", "cfg_scale", "temperature", "reward_kinds",
          "agreement_seeds", "agreement_images", "agreement_json"}},
        process}},
  };
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> words;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-' && rest.size() == 1 && words.size() < 2) {
      words.emplace_back(argv[i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  char** rest_argv = rest.data();
  duet::RecipeSettings() = duet::TakeRepeatedFlag("set", &rest_argc, rest_argv);
  const std::string cmd = words.empty() ? "" : words[0];
  const std::string both = words.size() > 1 ? cmd + " " + words[1] : cmd;
  for (const Command& c : Commands()) {
    if (c.words != both && c.words != cmd) continue;
    if (duet::PrintHelpIfAsked(rest_argc, rest_argv,
                               "usage: duet " + c.words + " [flags]", c.flags))
      return 0;
    if (!duet::RecipeSettings().empty() && c.words != "local" && c.words != "rl") {
      std::fprintf(stderr,
                   "duet %s: --set sets a recipe key, for the commands that take a "
                   "recipe (local, rl)\n",
                   c.words.c_str());
      return 2;
    }
    gflags::SetUsageMessage(kUsage);
    FLAGS_logtostderr = true;
    gflags::ParseCommandLineFlags(&rest_argc, &rest_argv, /*remove_flags=*/true);
    // What this command would silently ignore is refused: a stray word ("lr=1e-3") or a
    // flag of another command (`duet local --steps=3`).
    if (rest_argc > 1) {
      std::fprintf(stderr,
                   "duet %s: unexpected argument '%s' (flags are --name=value; duet %s "
                   "--help lists them)\n",
                   c.words.c_str(), rest_argv[1], c.words.c_str());
      return 2;
    }
    for (const std::string& flag : duet::FlagsOutsideGroups(c.flags, "/tools/")) {
      std::fprintf(
          stderr,
          "duet %s: --%s is not a flag of this command (duet %s --help lists them)\n",
          c.words.c_str(), flag.c_str(), c.words.c_str());
      return 2;
    }
    google::InitGoogleLogging(argv[0]);
    return c.run();
  }
  if (duet::PrintHelpIfAsked(rest_argc, rest_argv, kUsage, {})) return 0;
  std::fprintf(stderr, "%s\n", kUsage);
  return 2;
}
