#ifndef DUET_LEARNER_SERVICE_QUEUE_METRICS_H_
#define DUET_LEARNER_SERVICE_QUEUE_METRICS_H_

// The work queue's metrics (docs/metrics.md, "Coordinator" and "Pools"): items queued,
// leased, completed, re-issued and failed, duplicate results, the time items wait for a
// worker and workers wait for an item, workers in contact, and the pool-size
// recommendation duet_pool_desired_workers{role} with the catalogue's formula.
//
// WorkQueue reports its events here (On*); weight-sync items are left out (they are the
// duet_weights_ series'). Time-integrated counters (work open, idle worker-seconds) and
// the live-worker gauges advance at every event and at Refresh(), which the metrics
// server runs at each scrape, so they move while the training thread waits.
//
// Live workers are the work queue's lease registry: a worker counts from OnRegister until
// OnWorkerGone (lease expired: lost; Deregister: left). The items a gone worker held are
// queued again (re-issued; for a lost worker each is also a lease expiration). Draining
// stays 0 (workers leave at once).
//
// Thread-safety: thread-safe (its own mutex; it never calls out, so WorkQueue may call
// it under the queue's mutex).

#include <deque>
#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/metrics/catalogue.h"
#include "duet/v1/coordinator.pb.h"

namespace duet {

class QueueMetrics {
 public:
  // `metrics` and `clock` outlive this object.
  QueueMetrics(metrics::CoordinatorMetrics* metrics, Clock* clock,
               absl::Duration window = absl::Seconds(120));

  void OnRegister(const std::string& worker_id, v1::Role role);
  void OnSubmit(const std::string& item_id, v1::Role role, bool sync);
  void OnPullBegin(const std::string& worker_id);
  // `leased_item_id` empty: the long-poll ended without an item.
  void OnPullEnd(const std::string& worker_id, absl::Duration waited,
                 const std::string& leased_item_id);
  // `outcome`: what WorkQueue::Complete returned.
  void OnComplete(const v1::CompleteWorkRequest& result, const absl::Status& outcome);
  // The item left the queue without a result (an abandoned Await).
  void OnDrop(const std::string& item_id);
  // The worker left the registry: `lost` (its lease expired) or by Deregister. Role items
  // it held go back to the queue.
  void OnWorkerGone(const std::string& worker_id, bool lost);
  // A result from a worker that was lost, refused.
  void OnLateResult(const std::string& worker_id);
  // An error result or a missed deadline was charged to the worker.
  void OnWorkerError(const std::string& worker_id);
  // The worker is quarantined (OnWorkerGone(lost) follows).
  void OnQuarantine(const std::string& worker_id);
  // The leased item was taken back at its deadline (it completes with an error result).
  void OnItemTimeout(const std::string& item_id);

  // Advances the time-integrated counters to now and sets the live-worker gauges.
  void Refresh();
  // Recomputes the duet_pool_* gauges over the last `window` (at least since the previous
  // call). `recipe_*`: the pool sizes the recipe asks for (used while no work was open).
  void UpdatePools(int recipe_rollout, int recipe_scorer);

  // The formula of docs/metrics.md, for one role. open_seconds > 0: clamp(round(N - I +
  // Q), 1, max(C, 1)) with Q = wait / open, I = idle / open; else max(N, recipe).
  static int DesiredWorkers(double open_seconds, double wait_seconds,
                            double idle_worker_seconds, int live, int max_open_items,
                            int recipe_workers);

 private:
  struct RoleState {
    int queued = 0;
    int leased = 0;
    int polling = 0;
    int live = 0;             // registered workers of the role
    int max_open = 0;         // most items open at once since the last UpdatePools
    double open_seconds = 0;  // cumulative
    double idle_seconds = 0;  // cumulative worker-seconds
    double wait_seconds = 0;  // cumulative item wait of leased items
  };
  struct Snapshot {
    absl::Time time;
    double open_seconds[2];
    double idle_seconds[2];
    double wait_seconds[2];
    int max_open[2];
  };
  struct Item {
    int role;  // 0 rollout, 1 scorer
    bool leased = false;
    absl::Time queued_at;
    absl::Time leased_at;
    std::string worker_id;  // the holder while leased
  };

  void AdvanceLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetGaugesLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LiveLocked(int role) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  metrics::CoordinatorMetrics* const metrics_;
  Clock* const clock_;
  const absl::Duration window_;
  mutable absl::Mutex mu_;  // guards everything below
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  RoleState roles_[2] ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> worker_role_
      ABSL_GUARDED_BY(mu_);  // the registry: id -> role
  std::map<std::string, int> lost_role_
      ABSL_GUARDED_BY(mu_);  // lost workers' roles (late results)
  std::set<std::string> polling_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Item> items_
      ABSL_GUARDED_BY(mu_);  // rollout and score items in the queue
  std::deque<Snapshot> snapshots_
      ABSL_GUARDED_BY(mu_);  // one per UpdatePools, oldest first
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_QUEUE_METRICS_H_
