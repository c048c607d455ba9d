// `duet pool --out=RUN [--rollout=N] [--scorer=N]`: scales the worker pools of a running
// `duet local` job, as `kubectl scale` does a Deployment: rewrites <RUN>/pool.json (the
// desired counts) atomically and prints the desired and running counts; duet local starts
// or stops worker processes within about a second (tools/worker_pool.h). Without
// --rollout/--scorer it only prints. A folder that no duet local holds (<RUN>/.lock,
// tools/run_folder.h) is refused: there is no job to scale.

#include <gflags/gflags.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "tools/commands.h"
#include "tools/run_folder.h"
#include "tools/worker_pool.h"

DECLARE_string(out);

DEFINE_int32(rollout, -1, "pool: desired rollout workers (-1: keep)");
DEFINE_int32(scorer, -1, "pool: desired scorer workers (-1: keep)");

namespace duet {
namespace {

std::string Counts(const PoolCounts& c) {
  return absl::StrFormat("rollout %d, scorer %d", c.rollout, c.scorer);
}

absl::Status RunPoolImpl() {
  if (FLAGS_out.empty())
    return absl::InvalidArgumentError(
        "give --out=RUN, the folder of a running duet local");
  auto given = [](const char* flag) {
    return !gflags::GetCommandLineFlagInfoOrDie(flag).is_default;
  };
  DUET_ASSIGN_OR_RETURN(const pid_t holder, RunFolderHolder(FLAGS_out));
  if (holder == 0) {
    return absl::FailedPreconditionError(absl::StrCat("no running duet local in ",
                                                      FLAGS_out, " (no process holds ",
                                                      JoinPath(FLAGS_out, ".lock"), ")"));
  }
  const std::string status_path = JoinPath(FLAGS_out, "pool_status.json");
  absl::StatusOr<PoolStatus> status = ReadPoolStatus(status_path);
  if (absl::IsNotFound(status.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no running duet local in ", FLAGS_out, " (", status_path, " does not exist)"));
  }
  DUET_RETURN_IF_ERROR(status.status());
  if (status->controller <= 0 || (kill(status->controller, 0) != 0 && errno == ESRCH)) {
    return absl::FailedPreconditionError(absl::StrCat("no running duet local in ",
                                                      FLAGS_out, ": its controller (pid ",
                                                      status->controller, ") is gone"));
  }
  PoolCounts desired = status->desired;
  const PoolCounts before = desired;
  // pool.json holds what the last `duet pool` asked for, even before duet local acted on
  // it.
  if (auto file = ReadPoolFile(JoinPath(FLAGS_out, "pool.json")); file.ok())
    desired = *file;
  const PoolCounts asked_before = desired;
  for (auto [flag, role] : {std::pair{"rollout", PoolRole::kRollout},
                            std::pair{"scorer", PoolRole::kScorer}}) {
    if (!given(flag)) continue;
    const int n = role == PoolRole::kRollout ? FLAGS_rollout : FLAGS_scorer;
    if (n < 1 || n > kMaxLocalWorkers) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, "=", n, ": a run needs between 1 and ",
                       kMaxLocalWorkers, " ", flag, " workers"));
    }
    desired.of(role) = n;
  }
  if (desired != asked_before)
    DUET_RETURN_IF_ERROR(WritePoolFile(JoinPath(FLAGS_out, "pool.json"), desired));
  std::printf(
      "desired: %s%s\nrunning: %s\n", Counts(desired).c_str(),
      desired != before ? absl::StrCat(" (was ", Counts(before), ")").c_str() : "",
      Counts(status->running).c_str());
  return absl::OkStatus();
}

}  // namespace

int RunPool() { return RunCommand("pool", RunPoolImpl); }

}  // namespace duet
