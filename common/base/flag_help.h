#ifndef DUET_COMMON_BASE_FLAG_HELP_H_
#define DUET_COMMON_BASE_FLAG_HELP_H_

// `--help` that shows a program's own flags only. gflags' built-in --help lists every
// flag linked into the process (LibTorch's, glog's, gflags' own, every subcommand's);
// Duet's binaries call PrintHelpIfAsked first, with their flags in titled groups. gflags'
// --helpfull still lists everything.
//
// Thread-safety: call from main() before other threads use gflags.

#include <cstdio>
#include <string>
#include <vector>

namespace duet {

// A titled group of flag names, in the order --help shows them.
struct FlagGroup {
  std::string title;
  std::vector<std::string> flags;
  // Lines shown after the group's flags (for example the keys a flag accepts).
  std::vector<std::string> notes = {};
};

// Writes `usage`, then each group: one line per flag with its type, its default and its
// description. A name that no linked code defines is shown as "(not defined)" so that a
// stale table is visible.
void PrintFlagHelp(const std::string& usage, const std::vector<FlagGroup>& groups,
                   std::FILE* out);

// True when argv[1..argc) holds -h, -help, --help or --helpshort: then PrintFlagHelp to
// stdout has been called and the caller should exit 0.
bool PrintHelpIfAsked(int argc, char** argv, const std::string& usage,
                      const std::vector<FlagGroup>& groups);

// After parsing: the flags given on the command line that are defined in a source file
// whose path contains `own_dir` (the program's own flags, not a library's such as glog's)
// but are in none of `groups`: flags of another command, which this one would ignore.
std::vector<std::string> FlagsOutsideGroups(const std::vector<FlagGroup>& groups,
                                            const std::string& own_dir);

// Before gflags parses: removes every occurrence of the repeatable flag `name` from argv
// ("--name=V", "-name=V", "--name V", "-name V") and returns the values in order (gflags
// itself keeps only the last). A trailing "--name" without a value is left for gflags to
// refuse. argv[argc] stays nullptr.
std::vector<std::string> TakeRepeatedFlag(const std::string& name, int* argc,
                                          char** argv);

}  // namespace duet

#endif  // DUET_COMMON_BASE_FLAG_HELP_H_
