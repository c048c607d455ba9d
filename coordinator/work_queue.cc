#include "coordinator/work_queue.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace duet {

WorkQueue::WorkQueue(std::string run_id, int32_t max_ranked_workers, Clock* clock, int32_t max_workers)
    : run_id_(std::move(run_id)), clock_(clock), max_ranked_workers_(max_ranked_workers), max_workers_(max_workers) {}

absl::StatusOr<WorkerRecord> WorkQueue::Register(v1::Role role, const std::string& name, int32_t capacity) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(workers_.size()) >= max_workers_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the run has its ", max_workers_, " workers; retry when one has left"));
  }
  WorkerRecord w;
  w.role = role;
  w.name = name;
  w.capacity = capacity;
  // The id is the worker's name when it has a usable one (logs then match the process
  // that the operator named), made unique with a suffix; else role-N.
  const bool usable = !name.empty() && name.size() <= 64 &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                               c == '.' || c == ':';
                      });
  const std::string base =
      usable ? name : absl::StrCat(role == v1::ROLE_ROLLOUT ? "rollout-" : "scorer-", next_worker_index_[role]++);
  std::string id = base;
  for (int n = 2; workers_.count(id) > 0; ++n) id = absl::StrCat(base, "-", n);
  w.id = id;
  if (next_rank_ <= max_ranked_workers_) w.rank = next_rank_++;
  workers_[w.id] = w;
  return w;
}

std::vector<WorkerRecord> WorkQueue::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

int WorkQueue::CountWorkers(v1::Role role) const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [id, w] : workers_) n += w.role == role ? 1 : 0;
  return n;
}

absl::Status WorkQueue::AwaitWorkers(v1::Role role, int count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, role, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return true;
    int n = 0;
    for (const auto& [id, w] : workers_) n += w.role == role ? 1 : 0;
    return n >= count;
  };
  if (!clock_->AwaitWithDeadline(&mu_, absl::Condition(&ready), clock_->Now() + timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("waited ", absl::FormatDuration(timeout), " for ",
                                                    count, " ", v1::Role_Name(role), " workers"));
  }
  if (closed_) return absl::CancelledError("run is shutting down");
  return absl::OkStatus();
}

std::string WorkQueue::Submit(v1::Role role, v1::WorkItem item, const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  const std::string id = absl::StrCat(run_id_, "-", next_item_++);
  item.set_item_id(id);
  pending_.push_back(Pending{role, worker_id, std::move(item)});
  return id;
}

absl::StatusOr<std::optional<v1::WorkItem>> WorkQueue::Pull(const std::string& worker_id,
                                                            absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return absl::NotFoundError(absl::StrCat("unknown worker '", worker_id, "'"));
  if (polling_.count(worker_id) > 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("worker '", worker_id, "' already has a PullWork waiting: one at a time"));
  }
  for (const auto& [item_id, held] : in_flight_) {
    if (held.worker_id == worker_id && !closed_) {
      return absl::ResourceExhaustedError(absl::StrCat("worker '", worker_id, "' holds item ", item_id,
                                                       ": complete it before pulling another"));
    }
  }
  const v1::Role role = it->second.role;
  auto match = [&](const Pending& p) {
    return p.worker_id.empty() ? p.role == role : p.worker_id == worker_id;
  };
  auto available = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return true;
    for (const Pending& p : pending_) {
      if (match(p)) return true;
    }
    return false;
  };
  polling_.insert(worker_id);
  clock_->AwaitWithDeadline(&mu_, absl::Condition(&available), clock_->Now() + timeout);
  polling_.erase(worker_id);
  if (closed_) {
    told_shutdown_.insert(worker_id);
    return absl::CancelledError("run is shutting down");
  }
  // Items addressed to this worker first (weight syncs), then the oldest of its role.
  auto pick = pending_.end();
  for (auto p = pending_.begin(); p != pending_.end(); ++p) {
    if (p->worker_id == worker_id) {
      pick = p;
      break;
    }
    if (pick == pending_.end() && match(*p)) pick = p;
  }
  if (pick == pending_.end()) return std::optional<v1::WorkItem>();
  v1::WorkItem item = std::move(pick->item);
  pending_.erase(pick);
  in_flight_[item.item_id()] = InFlight{worker_id, item};
  return std::optional<v1::WorkItem>(std::move(item));
}

absl::Status WorkQueue::Complete(const v1::CompleteWorkRequest& result, const ResultCheck& check) {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(result.item_id());
  if (it == in_flight_.end()) {
    return absl::NotFoundError(absl::StrCat("item '", result.item_id(), "' is not in flight (unknown or done)"));
  }
  if (it->second.worker_id != result.worker_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat("item '", result.item_id(), "' is held by another worker than '", result.worker_id(), "'"));
  }
  if (check) DUET_RETURN_IF_ERROR(check(it->second.item, result));
  auto w = workers_.find(result.worker_id());
  if (w != workers_.end()) {
    ++w->second.items_completed;
    if (result.has_sync()) {
      w->second.confirmed_version = result.sync().version();
      w->second.confirmed_checksum = result.sync().checksum();
    }
  }
  in_flight_.erase(it);
  results_[result.item_id()] = result;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::CompleteWorkRequest>> WorkQueue::Await(
    const std::vector<std::string>& item_ids, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return true;
    for (const auto& id : item_ids) {
      if (results_.count(id) == 0) return false;
    }
    return true;
  };
  if (!clock_->AwaitWithDeadline(&mu_, absl::Condition(&done), clock_->Now() + timeout)) {
    int missing = 0;
    for (const auto& id : item_ids) missing += results_.count(id) == 0 ? 1 : 0;
    // Nobody waits for these items any more: drop them wherever they are, so that a late
    // result is refused (NotFound) instead of being kept forever.
    const std::set<std::string> abandoned(item_ids.begin(), item_ids.end());
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                  [&](const Pending& p) { return abandoned.count(p.item.item_id()) > 0; }),
                   pending_.end());
    for (const auto& id : item_ids) {
      in_flight_.erase(id);
      results_.erase(id);
    }
    return absl::DeadlineExceededError(absl::StrCat(missing, " of ", item_ids.size(),
                                                    " work items unfinished after ",
                                                    absl::FormatDuration(timeout)));
  }
  if (closed_) return absl::CancelledError("run is shutting down");
  std::vector<v1::CompleteWorkRequest> out;
  for (const auto& id : item_ids) {
    out.push_back(std::move(results_[id]));
    results_.erase(id);
  }
  return out;
}

int64_t WorkQueue::items_held() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(pending_.size() + in_flight_.size() + results_.size());
}

bool WorkQueue::AwaitShutdownNoticed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto all_told = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& [id, w] : workers_) {
      if (told_shutdown_.count(id) == 0) return false;
    }
    return true;
  };
  return clock_->AwaitWithDeadline(&mu_, absl::Condition(&all_told), clock_->Now() + timeout);
}

void WorkQueue::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool WorkQueue::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

}  // namespace duet
