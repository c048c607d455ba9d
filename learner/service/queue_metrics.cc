#include "learner/service/queue_metrics.h"

#include <algorithm>
#include <cmath>

namespace duet {
namespace {

int RoleIndex(v1::Role role) { return role == v1::ROLE_ROLLOUT ? 0 : 1; }
bool Transient(int code) {
  // A worker's passing trouble (IsTransientWorkerError): UNAVAILABLE, DEADLINE_EXCEEDED,
  // RESOURCE_EXHAUSTED, counted as re-issued; other codes count as failed items.
  // DispatchItems (remote_backends.cc) re-issues both until the item is poisoned.
  return code == 14 || code == 4 || code == 8;
}

}  // namespace

QueueMetrics::QueueMetrics(metrics::CoordinatorMetrics* metrics, Clock* clock,
                           absl::Duration window)
    : metrics_(metrics), clock_(clock), window_(window) {
  absl::MutexLock lock(&mu_);
  last_ = clock_->Now();
  snapshots_.push_back(Snapshot{last_, {0, 0}, {0, 0}, {0, 0}, {0, 0}});
}

void QueueMetrics::AdvanceLocked(absl::Time now) {
  const double dt = std::max(0.0, absl::ToDoubleSeconds(now - last_));
  last_ = std::max(last_, now);
  for (int r = 0; r < 2; ++r) {
    RoleState& s = roles_[r];
    if (s.queued + s.leased == 0 || dt == 0) continue;
    s.open_seconds += dt;
    s.idle_seconds += dt * s.polling;
    metrics_->work_open_seconds.Get(r == 0).Increment(dt);
    if (s.polling > 0)
      metrics_->worker_idle_seconds.Get(r == 0).Increment(dt * s.polling);
  }
}

int QueueMetrics::LiveLocked(int role) const { return roles_[role].live; }

void QueueMetrics::SetGaugesLocked(absl::Time now) {
  for (int r = 0; r < 2; ++r) {
    const RoleState& s = roles_[r];
    metrics_->items_queued.Get(r == 0).Set(s.queued);
    metrics_->items_leased.Get(r == 0).Set(s.leased);
    metrics_->live_workers.Get(r == 0).Set(LiveLocked(r));
  }
}

void QueueMetrics::OnRegister(const std::string& worker_id, v1::Role role) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  auto [w, added] = worker_role_.try_emplace(worker_id, RoleIndex(role));
  if (!added) {
    --roles_[w->second].live;
    w->second = RoleIndex(role);
  }
  ++roles_[w->second].live;
  metrics_->registrations.Get(role == v1::ROLE_ROLLOUT).Increment();
  SetGaugesLocked(now);
}

void QueueMetrics::OnSubmit(const std::string& item_id, v1::Role role, bool sync) {
  if (sync) return;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  const int r = RoleIndex(role);
  items_[item_id] = Item{r, false, now, now};
  RoleState& s = roles_[r];
  ++s.queued;
  s.max_open = std::max(s.max_open, s.queued + s.leased);
  metrics_->items_enqueued.Get(r == 0).Increment();
  SetGaugesLocked(now);
}

void QueueMetrics::OnPullBegin(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  auto w = worker_role_.find(worker_id);
  if (w == worker_role_.end()) return;
  if (polling_.insert(worker_id).second) ++roles_[w->second].polling;
  SetGaugesLocked(now);
}

void QueueMetrics::OnPullEnd(const std::string& worker_id, absl::Duration waited,
                             const std::string& leased_item_id) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  auto w = worker_role_.find(worker_id);
  if (w == worker_role_.end()) return;
  if (polling_.erase(worker_id) > 0) --roles_[w->second].polling;
  metrics_->worker_wait_seconds.Get(w->second == 0)
      .Observe(absl::ToDoubleSeconds(waited));
  auto it = items_.find(leased_item_id);
  if (it != items_.end() && !it->second.leased) {
    Item& item = it->second;
    RoleState& s = roles_[item.role];
    const double wait = absl::ToDoubleSeconds(now - item.queued_at);
    metrics_->item_wait_seconds.Get(item.role == 0).Observe(wait);
    s.wait_seconds += wait;
    --s.queued;
    ++s.leased;
    item.leased = true;
    item.leased_at = now;
    item.worker_id = worker_id;
  }
  SetGaugesLocked(now);
}

void QueueMetrics::OnComplete(const v1::CompleteWorkRequest& result,
                              const absl::Status& outcome) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  auto w = worker_role_.find(result.worker_id());
  if (absl::IsNotFound(outcome)) {
    // A result for an item not in flight: a duplicate (or a late result of a dropped
    // item).
    if (w != worker_role_.end())
      metrics_->duplicate_completions.Get(w->second == 0).Increment();
  }
  auto it = items_.find(result.item_id());
  if (!outcome.ok() || it == items_.end()) {
    SetGaugesLocked(now);
    return;
  }
  const Item item = it->second;
  items_.erase(it);
  RoleState& s = roles_[item.role];
  if (item.leased) {
    --s.leased;
  } else {
    --s.queued;
  }
  if (result.has_error()) {
    const int code = result.error().code();
    if (Transient(code)) {
      metrics_->items_reissued.Get(item.role == 0).Increment();
    } else {
      metrics_->ItemsFailed(item.role == 0, code).Increment();
    }
  } else {
    metrics_->items_completed.Get(item.role == 0).Increment();
    metrics_->item_service_seconds.Get(item.role == 0)
        .Observe(absl::ToDoubleSeconds(now - item.leased_at));
  }
  SetGaugesLocked(now);
}

void QueueMetrics::OnDrop(const std::string& item_id) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  auto it = items_.find(item_id);
  if (it == items_.end()) return;
  RoleState& s = roles_[it->second.role];
  if (it->second.leased) {
    --s.leased;
  } else {
    --s.queued;
  }
  items_.erase(it);
  SetGaugesLocked(now);
}

void QueueMetrics::OnWorkerGone(const std::string& worker_id, bool lost) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  auto w = worker_role_.find(worker_id);
  if (w == worker_role_.end()) return;
  const int role = w->second;
  worker_role_.erase(w);
  --roles_[role].live;
  if (polling_.erase(worker_id) > 0) --roles_[role].polling;
  if (lost) {
    lost_role_[worker_id] = role;
    metrics_->lost_workers.Get(role == 0).Increment();
  } else {
    metrics_->left_workers.Get(role == 0).Increment();
  }
  for (auto& [id, item] : items_) {
    if (!item.leased || item.worker_id != worker_id) continue;
    RoleState& s = roles_[item.role];
    --s.leased;
    ++s.queued;
    item.leased = false;
    item.queued_at = now;
    item.worker_id.clear();
    metrics_->items_reissued.Get(item.role == 0).Increment();
    if (lost) metrics_->lease_expirations.Get(item.role == 0).Increment();
  }
  SetGaugesLocked(now);
}

void QueueMetrics::OnLateResult(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = lost_role_.find(worker_id);
  if (it != lost_role_.end())
    metrics_->late_results_refused.Get(it->second == 0).Increment();
}

void QueueMetrics::OnWorkerError(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = worker_role_.find(worker_id);
  if (it != worker_role_.end()) metrics_->worker_errors.Get(it->second == 0).Increment();
}

void QueueMetrics::OnQuarantine(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = worker_role_.find(worker_id);
  if (it != worker_role_.end())
    metrics_->quarantined_workers.Get(it->second == 0).Increment();
}

void QueueMetrics::OnItemTimeout(const std::string& item_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = items_.find(item_id);
    if (it != items_.end())
      metrics_->items_timed_out.Get(it->second.role == 0).Increment();
  }
  OnDrop(item_id);
}

void QueueMetrics::Refresh() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  SetGaugesLocked(now);
}

int QueueMetrics::DesiredWorkers(double open_seconds, double wait_seconds,
                                 double idle_worker_seconds, int live, int max_open_items,
                                 int recipe_workers) {
  if (open_seconds <= 0) return std::max(live, recipe_workers);
  const double q = wait_seconds / open_seconds;
  const double i = idle_worker_seconds / open_seconds;
  const int desired = static_cast<int>(std::floor(live - i + q + 0.5));
  return std::clamp(desired, 1, std::max(max_open_items, 1));
}

void QueueMetrics::UpdatePools(int recipe_rollout, int recipe_scorer) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  AdvanceLocked(now);
  SetGaugesLocked(now);
  Snapshot current{now, {}, {}, {}, {}};
  for (int r = 0; r < 2; ++r) {
    current.open_seconds[r] = roles_[r].open_seconds;
    current.idle_seconds[r] = roles_[r].idle_seconds;
    current.wait_seconds[r] = roles_[r].wait_seconds;
    current.max_open[r] = roles_[r].max_open;
    roles_[r].max_open = roles_[r].queued + roles_[r].leased;
  }
  // The window starts at the newest snapshot at least `window_` old, or the previous one
  // (at least the last step).
  size_t start = snapshots_.size() - 1;
  while (start > 0 && now - snapshots_[start].time < window_) --start;
  const Snapshot& from = snapshots_[start];
  const double length = std::max(1e-9, absl::ToDoubleSeconds(now - from.time));
  for (int r = 0; r < 2; ++r) {
    const double open = current.open_seconds[r] - from.open_seconds[r];
    const double idle = current.idle_seconds[r] - from.idle_seconds[r];
    const double wait = current.wait_seconds[r] - from.wait_seconds[r];
    int max_open = current.max_open[r];
    for (size_t k = start + 1; k < snapshots_.size(); ++k)
      max_open = std::max(max_open, snapshots_[k].max_open[r]);
    const bool rollout = r == 0;
    metrics_->pool_open_ratio.Get(rollout).Set(std::min(1.0, open / length));
    metrics_->pool_items_waiting.Get(rollout).Set(open > 0 ? wait / open : 0);
    metrics_->pool_idle_workers.Get(rollout).Set(open > 0 ? idle / open : 0);
    metrics_->pool_desired_workers.Get(rollout).Set(
        DesiredWorkers(open, wait, idle, LiveLocked(r), max_open,
                       rollout ? recipe_rollout : recipe_scorer));
  }
  snapshots_.push_back(current);
  // Keep what the next window can start from.
  while (snapshots_.size() > 2 && now - snapshots_[1].time >= window_)
    snapshots_.pop_front();
}

}  // namespace duet
