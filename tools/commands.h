#ifndef DUET_TOOLS_COMMANDS_H_
#define DUET_TOOLS_COMMANDS_H_

// The `duet` subcommands. Each reads its gflags, runs, prints errors as
// "duet <command>: <status>" and returns a process exit code (0 ok, 1 failure, 2 usage).

#include <functional>
#include <string>

#include "absl/status/status.h"

#include "tools/shapes_eval.h"

namespace duet {

// Applies --threads to LibTorch (0 = every core). Every subcommand calls it first.
void SetLibTorchThreads();

// ShapesEval settings from the eval flags (--limit, --eval_seeds, --cfg_scale, --temperature, --top_k,
// --top_p, --caption_temperature, --seed) for held-out sets in `data_dir`; no report_dir.
EvalOptions EvalOptionsFromFlags(const std::string& data_dir);

// Runs a subcommand body: applies --threads, runs `body`, prints a failure as
// "duet <name>: <status>". Returns 0, or 1 on failure.
int RunCommand(const char* name, const std::function<absl::Status()>& body);

int RunMakeData();
// `duet world make-hard-split`: adds the hard understanding split to an existing data folder.
int RunMakeHardSplit();
int RunPretrain();
int RunEval();
int RunSample();
int RunDumpLogits();
int RunRl();
int RunRewardAgreement();
int RunLocal();
// `duet pool`: scales the worker pools of a running duet local job (tools/pool_command.cc).
int RunPool();
// `duet reward-server`: the Shapes oracle as a duet.v1.Reward service (tools/reward_server.cc).
int RunRewardServer();

}  // namespace duet

#endif  // DUET_TOOLS_COMMANDS_H_
