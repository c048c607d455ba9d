#ifndef DUET_TOOLS_PROCESS_H_
#define DUET_TOOLS_PROCESS_H_

// Process launching for `duet local`: where the role binaries are, and fork/exec with the
// output to a log file.
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
std::string FindBinary(const std::string& bin_dir, const std::string& name, const std::string& folder);

// fork/exec of `args` (args[0] is the program) with stdout and stderr appended to
// `log_path` (empty: inherited), every signal unblocked and a process group of its own
// (signals from the terminal go to the caller only). Returns its pid; Internal when fork
// fails.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log_path);

}  // namespace duet

#endif  // DUET_TOOLS_PROCESS_H_
