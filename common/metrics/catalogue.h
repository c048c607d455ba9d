#ifndef DUET_COMMON_METRICS_CATALOGUE_H_
#define DUET_COMMON_METRICS_CATALOGUE_H_

// Typed handles for the metric families of docs/metrics.md (the catalogue is the
// contract; the names, labels and buckets here follow it). Each struct registers its
// families in the process's one prometheus::Registry when constructed, with every label
// value the catalogue lists for start-up already created (zero), and keeps the
// references: nothing is looked up by name on the hot path.
//
// Thread-safety: prometheus-cpp's Counter, Gauge and Histogram are thread-safe; so is
// RpcMetrics::Record. The structs are built once, at start-up, from one thread.

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace duet::metrics {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Registry;

// Histogram buckets (docs/metrics.md, "Histogram buckets").
const Histogram::BucketBoundaries& PhaseBuckets();
const Histogram::BucketBoundaries& WaitBuckets();
const Histogram::BucketBoundaries& RpcBuckets();
const Histogram::BucketBoundaries& RowsBuckets();
const Histogram::BucketBoundaries& LagBuckets();
const Histogram::BucketBoundaries& SizeBuckets();

// The gRPC spelling of a status code number (absl and gRPC share the numbers): "OK",
// "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" for a number outside 0..16.
std::string_view CodeName(int code);

// A value per `direction` label: generation (text -> image), understanding.
template <typename T>
struct ByDirection {
  T* generation = nullptr;
  T* understanding = nullptr;
  T& Get(bool is_generation) const {
    return is_generation ? *generation : *understanding;
  }
};

// A value per pool `role` label: rollout, scorer.
template <typename T>
struct ByRole {
  T* rollout = nullptr;
  T* scorer = nullptr;
  T& Get(bool is_rollout) const { return is_rollout ? *rollout : *scorer; }
};

// duet_build_info{role,version,revision} = 1 and duet_process_start_time_seconds{role}
// (set to now). `role`: learner, rollout or scorer.
void RegisterProcessMetrics(Registry& registry, const std::string& role);

// duet_rpc_{server,client}_handled_total{method,code} and _handling_seconds{method}.
class RpcMetrics {
 public:
  enum class Side { kServer, kClient };
  // Creates code="OK" and the latency histogram for each of `methods` (short names:
  // "PullWork"); other codes appear when first recorded.
  RpcMetrics(Registry& registry, Side side, const std::vector<std::string>& methods);
  // Records one finished RPC. A method that is not in `methods` is ignored (health
  // checks, reflection). Thread-safe.
  void Record(std::string_view method, int code, double seconds);
  // The counter of (method, code), created when missing; nullptr for an unknown method.
  Counter* Handled(std::string_view method, int code);

 private:
  // Family::Add is thread-safe and returns the existing child for known labels.
  prometheus::Family<Counter>* handled_;
  struct PerMethod {
    Counter* ok;
    Histogram* seconds;
  };
  std::map<std::string, PerMethod, std::less<>> methods_;  // immutable after construction
};

// duet_learner_* (the algorithm, in duet-learner).
struct LearnerMetrics {
  explicit LearnerMetrics(Registry& registry);
  Gauge* step;
  Gauge* target_steps;
  Gauge* last_step_timestamp;
  Histogram* step_seconds;
  Histogram* phase_rollout;
  Histogram* phase_scoring;
  Histogram* phase_update;
  Histogram* phase_sync;
  Histogram* phase_checkpoint;
  ByDirection<Counter> samples, tokens, groups, stale_samples_dropped;
  Gauge* loss;
  Gauge* kl;
  Gauge* grad_norm;
  Gauge* learning_rate;
  ByDirection<Gauge> reward_mean, reward_std, reward_group_std,
      zero_variance_groups_ratio, advantage_std;
  Gauge* dlogp;
  Gauge* policy_version;
  Gauge* sample_lag_max;
  Gauge* sample_lag_bound;
  Gauge* checkpoint_timestamp;
  Gauge* checkpoint_step;
  Counter* checkpoint_failures;
};

// duet_coordinator_* and duet_pool_* (the work queue and the pools, in duet-learner).
struct CoordinatorMetrics {
  explicit CoordinatorMetrics(Registry& registry);
  ByRole<Gauge> live_workers, draining_workers;
  ByRole<Counter> lost_workers, left_workers, registrations, late_results_refused;
  // Fault handling (learner/service/work_queue.h): errors charged to workers, workers
  // quarantined for them (each also counts as lost), items taken back at their deadline.
  ByRole<Counter> worker_errors, quarantined_workers, items_timed_out;
  ByRole<Gauge> items_queued, items_leased;
  ByRole<Counter> items_enqueued, items_completed, items_reissued, lease_expirations,
      duplicate_completions;
  ByRole<Histogram> item_wait_seconds, item_service_seconds, worker_wait_seconds;
  ByRole<Counter> worker_idle_seconds, work_open_seconds;
  ByRole<Gauge> worker_version_lag_max;
  ByRole<Gauge> pool_desired_workers, pool_items_waiting, pool_idle_workers,
      pool_open_ratio;
  // duet_coordinator_items_failed_total{role,code}; created when first recorded.
  Counter& ItemsFailed(bool is_rollout, int code);

 private:
  prometheus::Family<Counter>* items_failed_;
};

// duet_weights_* (learner: what it publishes; workers: what they receive).
struct WeightsMetrics {
  explicit WeightsMetrics(Registry& registry);
  Gauge* version;
  Counter* broadcasts;
  Histogram* broadcast_seconds;
  Histogram* broadcast_size_bytes;
  Gauge* epoch;
  Gauge* members;
  Counter* bootstrap_bytes;
  // {code}: DATA_LOSS, DEADLINE_EXCEEDED, UNAVAILABLE and INTERNAL exist from start-up.
  Counter& BroadcastFailures(int code);
  // {code}: OK exists from start-up.
  Counter& BootstrapFetches(int code);

 private:
  prometheus::Family<Counter>* failures_;
  prometheus::Family<Counter>* fetches_;
};

// duet_rollout_* (duet-rollout).
struct RolloutMetrics {
  explicit RolloutMetrics(Registry& registry);
  ByDirection<Counter> samples, tokens;
  ByDirection<Histogram> batch_seconds, batch_rows;
  Histogram* policy_lag;
};

// duet_scorer_* (duet-scorer).
struct ScorerMetrics {
  explicit ScorerMetrics(Registry& registry);
  ByDirection<Counter> pairs;
  ByDirection<Histogram> batch_seconds, batch_rows;
};

// duet_worker_* (both worker roles).
struct WorkerMetrics {
  explicit WorkerMetrics(Registry& registry);
  Counter* idle_seconds;
  Gauge* busy_ratio;
  // duet_worker_items_total{code}: OK exists from start-up.
  Counter& Items(int code);

 private:
  prometheus::Family<Counter>* items_;
};

}  // namespace duet::metrics

#endif  // DUET_COMMON_METRICS_CATALOGUE_H_
