// `duet`: the command-line front end. Thin: parses the subcommand and flags, then calls
// the library function that does the work.
//
//   duet world make-data --out=DIR            synthetic paired / unpaired / held-out data
//   duet pretrain --data=DIR --out=DIR        supervised base model (resumable)
//   duet eval --model=DIR --data=DIR          ShapesEval: table, JSON report, gallery
//   duet sample --model=DIR --prompt=TEXT --out=PNG | --image=PNG
//   duet dev dump-logits ...                  parity-test helper (see tests/)

#include <cstdio>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "tools/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: duet <command> [flags]\n"
    "commands:\n"
    "  world make-data   write the Shapes world data sets and image tokenizer\n"
    "  pretrain          supervised pretraining of the base model (resumable)\n"
    "  eval              ShapesEval of a model on the held-out sets\n"
    "  local             the RL run on one machine: learner + worker processes, report\n"
    "  rl                dual self-reward RL in one process (library-level loop)\n"
    "  sample            one prompt to a PNG, or one PNG to a caption\n"
    "  dev dump-logits   write a random model and its logits (parity test)\n"
    "  dev reward-agreement  how well self-rewards rank samples, by the oracle\n"
    "run `duet <command> --help` for the flags";

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
  gflags::SetUsageMessage(kUsage);
  int rest_argc = static_cast<int>(rest.size());
  char** rest_argv = rest.data();
  FLAGS_logtostderr = true;
  gflags::ParseCommandLineFlags(&rest_argc, &rest_argv, /*remove_flags=*/true);
  google::InitGoogleLogging(argv[0]);
  const std::string cmd = words.empty() ? "" : words[0];
  const std::string sub = words.size() > 1 ? words[1] : "";
  if (cmd == "world" && sub == "make-data") return duet::RunMakeData();
  if (cmd == "pretrain") return duet::RunPretrain();
  if (cmd == "rl") return duet::RunRl();
  if (cmd == "local") return duet::RunLocal();
  if (cmd == "eval") return duet::RunEval();
  if (cmd == "sample") return duet::RunSample();
  if (cmd == "dev" && sub == "dump-logits") return duet::RunDumpLogits();
  if (cmd == "dev" && sub == "reward-agreement") return duet::RunRewardAgreement();
  std::fprintf(stderr, "%s\n", kUsage);
  return 2;
}
