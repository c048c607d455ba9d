#include "tools/worker_pool.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"

namespace duet {

const char* PoolRoleName(PoolRole role) {
  return role == PoolRole::kRollout ? "rollout" : "scorer";
}

namespace {

constexpr PoolRole kRoles[] = {PoolRole::kRollout, PoolRole::kScorer};

nlohmann::json CountsJson(const PoolCounts& c) {
  return {{"rollout", c.rollout}, {"scorer", c.scorer}};
}

}  // namespace

absl::Status ValidatePoolCounts(const PoolCounts& counts) {
  for (PoolRole role : kRoles) {
    const int n = counts.of(role);
    if (n < 1 || n > kMaxLocalWorkers) {
      return absl::InvalidArgumentError(
          absl::StrCat(PoolRoleName(role), " workers: ", n, " is not in [1, ",
                       kMaxLocalWorkers, "] (a run needs at least one of each role)"));
    }
  }
  return absl::OkStatus();
}

std::string PoolCountsToJson(const PoolCounts& counts) {
  return CountsJson(counts).dump() + "\n";
}

absl::StatusOr<PoolCounts> ParsePoolCounts(const std::string& json) {
  const nlohmann::json j =
      nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("pool counts are not a JSON object");
  PoolCounts c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "rollout" && it.key() != "scorer") {
      return absl::InvalidArgumentError(
          absl::StrCat("pool counts: unknown key \"", it.key(), "\""));
    }
  }
  for (PoolRole role : kRoles) {
    const char* key = PoolRoleName(role);
    if (!j.contains(key) || !j[key].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pool counts: \"", key, "\" must be an integer"));
    }
    const int64_t n = j[key].get<int64_t>();
    c.of(role) = static_cast<int>(std::clamp<int64_t>(n, -1, kMaxLocalWorkers + 1));
  }
  DUET_RETURN_IF_ERROR(ValidatePoolCounts(c));
  return c;
}

absl::StatusOr<PoolCounts> ReadPoolFile(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  absl::StatusOr<PoolCounts> c = ParsePoolCounts(text);
  if (!c.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", c.status().message()));
  return c;
}

absl::Status WritePoolFile(const std::string& path, const PoolCounts& counts) {
  DUET_RETURN_IF_ERROR(ValidatePoolCounts(counts));
  return WriteFileAtomically(path, PoolCountsToJson(counts));
}

WorkerPool::WorkerPool(WorkerLauncher* launcher, Clock* clock,
                       std::function<void(const std::string&)> log,
                       WorkerPoolOptions options)
    : launcher_(launcher), clock_(clock), log_(std::move(log)), options_(options) {}

std::string WorkerPool::Describe(const PoolMember& m, int status) const {
  if (WIFSIGNALED(status))
    return absl::StrCat(m.name, " (pid ", m.pid, ") was killed by signal ",
                        WTERMSIG(status));
  if (WIFEXITED(status))
    return absl::StrCat(m.name, " (pid ", m.pid, ") exited with ", WEXITSTATUS(status));
  return absl::StrCat(m.name, " (pid ", m.pid, ") ended with status ", status);
}

PoolCounts WorkerPool::running() const {
  PoolCounts c;
  for (const PoolMember& m : members_) {
    if (!m.leaving) ++c.of(m.role);
  }
  return c;
}

absl::StatusOr<bool> WorkerPool::Reconcile(const PoolCounts& desired, bool run_over) {
  bool changed = false;
  const absl::Time now = clock_->Now();
  // Reap.
  for (auto it = members_.begin(); it != members_.end();) {
    const std::optional<int> status = launcher_->Poll(it->pid);
    if (!status.has_value()) {
      ++it;
      continue;
    }
    changed = true;
    const bool clean = WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
    if (it->leaving) {
      log_(absl::StrCat("pool: ", Describe(*it, *status), " after leaving the pool"));
    } else if (run_over) {
      log_(absl::StrCat("pool: ", Describe(*it, *status), " (the run is over)"));
    } else {
      const bool crash = now - it->started < options_.crash_window;
      int& crashes = crashes_[it->role];
      crashes = crash ? crashes + 1 : 0;
      absl::Duration delay = absl::ZeroDuration();
      if (crashes > 0) {
        delay = std::min(options_.max_restart_backoff,
                         options_.restart_backoff * (1 << std::min(crashes - 1, 16)));
        restart_after_[it->role] = now + delay;
      }
      log_(absl::StrCat("pool: ", Describe(*it, *status),
                        clean ? ", left on its own" : ", unexpectedly",
                        "; a replacement keeps ", PoolRoleName(it->role), " at ",
                        desired.of(it->role),
                        delay > absl::ZeroDuration()
                            ? absl::StrCat(" (in ", absl::FormatDuration(delay), ")")
                            : ""));
    }
    it = members_.erase(it);
  }
  if (run_over) return changed;
  const PoolCounts have = running();
  for (PoolRole role : kRoles) {
    const int want = desired.of(role);
    for (int n = have.of(role); n < want; ++n) {
      auto after = restart_after_.find(role);
      if (after != restart_after_.end() && now < after->second) break;
      PoolMember m;
      m.role = role;
      m.name = absl::StrCat(PoolRoleName(role), "-", next_index_[role]);
      m.slot = next_slot_;
      m.started = now;
      DUET_ASSIGN_OR_RETURN(m.pid, launcher_->Start(role, m.name, m.slot));
      ++next_index_[role];
      ++next_slot_;
      log_(absl::StrCat("pool: started ", m.name, " (pid ", m.pid,
                        "): ", PoolRoleName(role), " ", n + 1, " of ", want));
      members_.push_back(std::move(m));
      changed = true;
    }
    // Shrink: the newest first, as a ReplicaSet scaled down removes its youngest pods.
    int extra = have.of(role) - want;
    for (auto it = members_.rbegin(); it != members_.rend() && extra > 0; ++it) {
      if (it->role != role || it->leaving) continue;
      launcher_->Signal(it->pid, SIGTERM);
      it->leaving = true;
      --extra;
      changed = true;
      log_(absl::StrCat("pool: SIGTERM to ", it->name, " (pid ", it->pid,
                        "): ", PoolRoleName(role), " ", have.of(role), " -> ", want,
                        "; it finishes its item and leaves"));
    }
  }
  return changed;
}

void WorkerPool::StopAll(absl::Duration grace) {
  for (PoolMember& m : members_) {
    launcher_->Signal(m.pid, SIGTERM);
    m.leaving = true;
  }
  const absl::Time deadline = clock_->Now() + grace;
  while (!members_.empty()) {
    for (auto it = members_.begin(); it != members_.end();) {
      it = launcher_->Poll(it->pid).has_value() ? members_.erase(it) : it + 1;
    }
    if (members_.empty()) break;
    if (clock_->Now() >= deadline) {
      for (const PoolMember& m : members_) {
        log_(absl::StrCat("pool: ", m.name, " (pid ", m.pid, ") did not stop within ",
                          absl::FormatDuration(grace), ": SIGKILL"));
        launcher_->Signal(m.pid, SIGKILL);
      }
      grace = absl::ZeroDuration();
      // Reap them: a SIGKILLed process ends at once.
      for (int tries = 0; tries < 100 && !members_.empty(); ++tries) {
        for (auto it = members_.begin(); it != members_.end();) {
          it = launcher_->Poll(it->pid).has_value() ? members_.erase(it) : it + 1;
        }
        if (!members_.empty()) clock_->SleepFor(absl::Milliseconds(10));
      }
      members_.clear();
      break;
    }
    clock_->SleepFor(absl::Milliseconds(100));
  }
}

std::string PoolStatusJson(pid_t controller, const PoolCounts& desired,
                           const WorkerPool& pool) {
  nlohmann::json workers = nlohmann::json::array();
  for (const PoolMember& m : pool.members()) {
    workers.push_back({{"name", m.name},
                       {"role", PoolRoleName(m.role)},
                       {"pid", m.pid},
                       {"leaving", m.leaving}});
  }
  return nlohmann::json({{"controller_pid", controller},
                         {"desired", CountsJson(desired)},
                         {"running", CountsJson(pool.running())},
                         {"workers", workers}})
             .dump(2) +
         "\n";
}

absl::StatusOr<PoolStatus> ReadPoolStatus(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const nlohmann::json j =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto counts = [&](const char* key, PoolCounts* out) {
    if (!j.contains(key) || !j[key].is_object()) return false;
    for (PoolRole role : kRoles) {
      const nlohmann::json& v = j[key];
      if (!v.contains(PoolRoleName(role)) || !v[PoolRoleName(role)].is_number_integer())
        return false;
      out->of(role) = v[PoolRoleName(role)].get<int>();
    }
    return true;
  };
  PoolStatus s;
  if (j.is_discarded() || !j.is_object() || !j.contains("controller_pid") ||
      !j["controller_pid"].is_number_integer() || !counts("desired", &s.desired) ||
      !counts("running", &s.running)) {
    return absl::DataLossError(absl::StrCat(path, " is not a pool status"));
  }
  s.controller = j["controller_pid"].get<pid_t>();
  return s;
}

}  // namespace duet
