#ifndef DUET_TOOLS_WORKER_POOL_H_
#define DUET_TOOLS_WORKER_POOL_H_

// The worker processes of a `duet local` run, kept at a desired count per role the way a
// Kubernetes ReplicaSet keeps its pods:
//   <out>/pool.json         the desired counts, {"rollout": N, "scorer": M}: written by
//                           duet local at start and by `duet pool` (atomically) later;
//   <out>/pool_status.json  what runs now (the controller's pid, desired and running
//   counts,
//                           each worker): written by duet local at every change, removed
//                           when it exits; `duet pool` reads it.
// WorkerPool::Reconcile (duet local calls it about once a second) starts workers when
// fewer run than desired, sends SIGTERM to the newest when more run (a graceful leave:
// each finishes its item, deregisters and exits 0), and replaces a worker that died (a
// signal or a non-zero exit) or left on its own while the run goes on. Every action is
// logged.
//
// Thread-safety: the free functions are pure or touch only the given file; WorkerPool is
// thread-compatible (duet local's main thread).

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace duet {

enum class PoolRole { kRollout, kScorer };
const char* PoolRoleName(PoolRole role);  // "rollout", "scorer"

// Workers of each role. A run needs at least one of each; one machine runs at most
// kMaxLocalWorkers of a role.
struct PoolCounts {
  int rollout = 0;
  int scorer = 0;
  int& of(PoolRole role) { return role == PoolRole::kRollout ? rollout : scorer; }
  int of(PoolRole role) const { return role == PoolRole::kRollout ? rollout : scorer; }
  bool operator==(const PoolCounts& o) const {
    return rollout == o.rollout && scorer == o.scorer;
  }
  bool operator!=(const PoolCounts& o) const { return !(*this == o); }
};
inline constexpr int kMaxLocalWorkers = 64;

// InvalidArgument unless each count is in [1, kMaxLocalWorkers], naming the bad one.
absl::Status ValidatePoolCounts(const PoolCounts& counts);

// pool.json: {"rollout": N, "scorer": M}. Parse refuses other keys, missing keys and
// counts that ValidatePoolCounts refuses (InvalidArgument).
std::string PoolCountsToJson(const PoolCounts& counts);
absl::StatusOr<PoolCounts> ParsePoolCounts(const std::string& json);
absl::StatusOr<PoolCounts> ReadPoolFile(const std::string& path);
// Validates, then writes `path` atomically (a temporary file renamed over it).
absl::Status WritePoolFile(const std::string& path, const PoolCounts& counts);

// How the pool starts and signals processes: fork/exec in duet local, a fake in tests.
class WorkerLauncher {
 public:
  virtual ~WorkerLauncher() = default;
  // Starts worker `name` of `role`; `slot` is a number no other worker of the run had
  // (duet local derives its metrics port from it). Returns its pid.
  virtual absl::StatusOr<pid_t> Start(PoolRole role, const std::string& name,
                                      int slot) = 0;
  virtual void Signal(pid_t pid, int signo) = 0;
  // The wait status of `pid` once it has ended (and is reaped); nullopt while it runs.
  virtual std::optional<int> Poll(pid_t pid) = 0;
};

struct PoolMember {
  PoolRole role = PoolRole::kRollout;
  std::string name;  // rollout-<i>, scorer-<i>: i counts up per role and is never reused
  int slot = 0;      // run-wide start order
  pid_t pid = 0;
  bool leaving = false;  // sent SIGTERM to shrink the pool
  absl::Time started;
};

struct WorkerPoolOptions {
  // A worker that dies within `crash_window` of starting counts as a crash; its role's
  // next replacement waits restart_backoff * 2^(crashes in a row - 1), at most
  // max_restart_backoff (no fork loop when a worker cannot start).
  absl::Duration crash_window = absl::Seconds(10);
  absl::Duration restart_backoff = absl::Seconds(1);
  absl::Duration max_restart_backoff = absl::Seconds(30);
};

class WorkerPool {
 public:
  // `launcher` and `clock` must outlive the pool; `log` gets one line per action.
  WorkerPool(WorkerLauncher* launcher, Clock* clock,
             std::function<void(const std::string&)> log, WorkerPoolOptions options = {});

  // Reaps the workers that ended (logging how), then, unless `run_over` (the learner
  // ended or is ending: nothing is started or replaced any more), starts workers of a
  // role with fewer than `desired` running (not counting those leaving) and sends SIGTERM
  // to the newest of a role with more. Returns whether anything changed; an error when a
  // worker could not be started (the next call tries again).
  absl::StatusOr<bool> Reconcile(const PoolCounts& desired, bool run_over);

  // Workers running and not leaving, per role.
  PoolCounts running() const;
  // Every worker not yet reaped, in start order.
  const std::vector<PoolMember>& members() const { return members_; }

  // Sends SIGTERM to every worker, waits up to `grace` for them to end, then SIGKILLs and
  // reaps the rest.
  void StopAll(absl::Duration grace);

 private:
  std::string Describe(const PoolMember& m, int status) const;

  WorkerLauncher* launcher_;
  Clock* clock_;
  std::function<void(const std::string&)> log_;
  WorkerPoolOptions options_;
  std::vector<PoolMember> members_;
  int next_slot_ = 0;
  std::map<PoolRole, int> next_index_;
  std::map<PoolRole, int> crashes_;               // in a row, per role
  std::map<PoolRole, absl::Time> restart_after_;  // no replacement before this
};

// pool_status.json: the controller's pid, the desired and running counts, each worker.
std::string PoolStatusJson(pid_t controller, const PoolCounts& desired,
                           const WorkerPool& pool);
struct PoolStatus {
  pid_t controller = 0;
  PoolCounts desired;
  PoolCounts running;
};
// NotFound when there is no status file (no duet local runs there); DataLoss when it does
// not parse.
absl::StatusOr<PoolStatus> ReadPoolStatus(const std::string& path);

}  // namespace duet

#endif  // DUET_TOOLS_WORKER_POOL_H_
