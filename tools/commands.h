#ifndef DUET_TOOLS_COMMANDS_H_
#define DUET_TOOLS_COMMANDS_H_

// The `duet` subcommands. Each reads its gflags, runs, prints errors as
// "duet <command>: <status>" and returns a process exit code (0 ok, 1 failure, 2 usage).

namespace duet {

// Applies --threads to LibTorch (0 = every core). Every subcommand calls it first.
void SetLibTorchThreads();

int RunMakeData();
int RunPretrain();
int RunEval();
int RunSample();
int RunDumpLogits();
int RunRl();
int RunRewardAgreement();
int RunLocal();

}  // namespace duet

#endif  // DUET_TOOLS_COMMANDS_H_
