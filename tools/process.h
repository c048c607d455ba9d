#ifndef DUET_TOOLS_PROCESS_H_
#define DUET_TOOLS_PROCESS_H_

// Process launching for `duet local`: where the role binaries are, and fork/exec with the
// output to a log file (or to a log file and the terminal).
//
// Thread-safety: free functions.

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace duet {

// The path of binary `name`: in `bin_dir` when it is set; else next to the running
// program (an install puts them side by side) or in ../`folder`/ (the build tree keeps
// each binary in its folder's directory).
std::string FindBinary(const std::string& bin_dir, const std::string& name,
                       const std::string& folder);

// fork/exec of `args` (args[0] is the program) with stdout and stderr appended to
// `log_path` (empty: inherited), every signal unblocked and a process group of its own
// (signals from the terminal go to the caller only). Returns its pid; Internal when fork
// fails.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args,
                            const std::string& log_path);

// A program whose output a copier process sends both to a log file and to our stderr.
struct SpawnedTee {
  pid_t program = -1;
  pid_t copier = -1;  // exits once the program's output closes; reap it after the program
};
// Like Spawn, but stdout and stderr go to `log_path` (appended) and to this process's
// stderr at once, through a copier process in a process group of its own (a Ctrl-C does
// not cut the program's last lines). Internal when the log cannot be opened or fork
// fails.
absl::StatusOr<SpawnedTee> SpawnTee(const std::vector<std::string>& args,
                                    const std::string& log_path);

}  // namespace duet

#endif  // DUET_TOOLS_PROCESS_H_
