#ifndef DUET_TOOLS_COMMANDS_H_
#define DUET_TOOLS_COMMANDS_H_

// The `duet` subcommands. Each reads its gflags, runs, prints errors as
// "duet <command>: <status>" and returns a process exit code (0 ok, 1 failure, 2 usage).

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tools/shapes_eval.h"

namespace duet {

// Applies --threads to LibTorch (0 = every core). Every subcommand calls it first.
void SetLibTorchThreads();

// ShapesEval settings from the eval flags (--limit, --eval_seeds, --cfg_scale,
// --temperature, --top_k,
// --top_p, --caption_temperature, --seed) for held-out sets in `data_dir`; no report_dir.
EvalOptions EvalOptionsFromFlags(const std::string& data_dir);

// Runs a subcommand body: applies --threads, runs `body`, prints a failure as
// "duet <name>: <status>". Returns 0, or 1 on failure.
int RunCommand(const char* name, const std::function<absl::Status()>& body);

// The recipe settings of this invocation (--set KEY=VALUE, repeatable, in order; taken
// out of argv before gflags parses), for the commands that take a recipe (local, rl).
std::vector<std::string>& RecipeSettings();

int RunMakeData();
// `duet world make-hard-split`: adds the hard understanding split to an existing data
// folder.
int RunMakeHardSplit();
int RunPretrain();
int RunEval();
int RunSample();
int RunDumpLogits();
int RunRl();
int RunRewardAgreement();
int RunLocal();
// `duet pool`: scales the worker pools of a running duet local job
// (tools/pool_command.cc).
int RunPool();
// `duet reward-server`: the Shapes oracle as a duet.v1.Reward service
// (tools/reward_server.cc).
int RunRewardServer();
// `duet health`: what a process's probes see (tools/health_command.cc).
int RunHealth();

}  // namespace duet

#endif  // DUET_TOOLS_COMMANDS_H_
