#include "common/metrics/catalogue.h"

#include <prometheus/counter.h>

namespace duet::metrics {
namespace {

using prometheus::Family;
using prometheus::Labels;

Family<Gauge>& GaugeFamily(Registry& r, const std::string& name,
                           const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
Family<Counter>& CounterFamily(Registry& r, const std::string& name,
                               const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
Family<Histogram>& HistogramFamily(Registry& r, const std::string& name,
                                   const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}
Gauge* G(Registry& r, const std::string& name, const std::string& help) {
  return &GaugeFamily(r, name, help).Add({});
}
Counter* C(Registry& r, const std::string& name, const std::string& help) {
  return &CounterFamily(r, name, help).Add({});
}
Histogram* H(Registry& r, const std::string& name, const std::string& help,
             const Histogram::BucketBoundaries& b) {
  return &HistogramFamily(r, name, help).Add({}, b);
}

template <typename T>
ByDirection<T> Directions(Family<T>& f) {
  return {&f.Add({{"direction", "generation"}}),
          &f.Add({{"direction", "understanding"}})};
}
ByDirection<Histogram> Directions(Family<Histogram>& f,
                                  const Histogram::BucketBoundaries& b) {
  return {&f.Add({{"direction", "generation"}}, b),
          &f.Add({{"direction", "understanding"}}, b)};
}
template <typename T>
ByRole<T> Roles(Family<T>& f) {
  return {&f.Add({{"role", "rollout"}}), &f.Add({{"role", "scorer"}})};
}
ByRole<Histogram> Roles(Family<Histogram>& f, const Histogram::BucketBoundaries& b) {
  return {&f.Add({{"role", "rollout"}}, b), &f.Add({{"role", "scorer"}}, b)};
}

}  // namespace

const Histogram::BucketBoundaries& PhaseBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 150, 300, 600};
  return *b;
}
const Histogram::BucketBoundaries& WaitBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  return *b;
}
const Histogram::BucketBoundaries& RpcBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
  return *b;
}
const Histogram::BucketBoundaries& RowsBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  return *b;
}
const Histogram::BucketBoundaries& LagBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{0, 1, 2, 3, 4, 8, 16};
  return *b;
}
const Histogram::BucketBoundaries& SizeBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      1048576.0,   4194304.0,    16777216.0,   67108864.0,
      268435456.0, 1073741824.0, 4294967296.0, 17179869184.0};
  return *b;
}

std::string_view CodeName(int code) {
  static constexpr std::string_view kNames[] = {"OK",
                                                "CANCELLED",
                                                "UNKNOWN",
                                                "INVALID_ARGUMENT",
                                                "DEADLINE_EXCEEDED",
                                                "NOT_FOUND",
                                                "ALREADY_EXISTS",
                                                "PERMISSION_DENIED",
                                                "RESOURCE_EXHAUSTED",
                                                "FAILED_PRECONDITION",
                                                "ABORTED",
                                                "OUT_OF_RANGE",
                                                "UNIMPLEMENTED",
                                                "INTERNAL",
                                                "UNAVAILABLE",
                                                "DATA_LOSS",
                                                "UNAUTHENTICATED"};
  if (code < 0 || code > 16) return "UNKNOWN";
  return kNames[code];
}

RpcMetrics::RpcMetrics(Registry& registry, Side side,
                       const std::vector<std::string>& methods) {
  const bool server = side == Side::kServer;
  handled_ = &CounterFamily(
      registry,
      server ? "duet_rpc_server_handled_total" : "duet_rpc_client_handled_total",
      server ? "RPCs the process served, by final status."
             : "RPCs the process made, by final status.");
  auto& seconds = HistogramFamily(
      registry,
      server ? "duet_rpc_server_handling_seconds" : "duet_rpc_client_handling_seconds",
      server ? "Time from a served RPC's arrival to its status."
             : "Time from a call to its status.");
  for (const std::string& m : methods) {
    methods_[m] = PerMethod{&handled_->Add({{"method", m}, {"code", "OK"}}),
                            &seconds.Add({{"method", m}}, RpcBuckets())};
  }
}

Counter* RpcMetrics::Handled(std::string_view method, int code) {
  auto it = methods_.find(method);
  if (it == methods_.end()) return nullptr;
  if (code == 0) return it->second.ok;
  return &handled_->Add({{"method", it->first}, {"code", std::string(CodeName(code))}});
}

void RpcMetrics::Record(std::string_view method, int code, double seconds) {
  auto it = methods_.find(method);
  if (it == methods_.end()) return;
  it->second.seconds->Observe(seconds);
  Handled(method, code)->Increment();
}

LearnerMetrics::LearnerMetrics(Registry& r) {
  step = G(r, "duet_learner_step", "Steps completed.");
  target_steps = G(r, "duet_learner_target_steps", "recipe.steps.");
  last_step_timestamp =
      G(r, "duet_learner_last_step_timestamp_seconds",
        "When the last step completed (the start time until the first).");
  last_step_timestamp->SetToCurrentTime();
  step_seconds =
      H(r, "duet_learner_step_seconds", "Duration of each whole step.", PhaseBuckets());
  auto& phases = HistogramFamily(r, "duet_learner_step_duration_seconds",
                                 "Duration of each phase of each step.");
  phase_rollout = &phases.Add({{"phase", "rollout"}}, PhaseBuckets());
  phase_scoring = &phases.Add({{"phase", "scoring"}}, PhaseBuckets());
  phase_update = &phases.Add({{"phase", "update"}}, PhaseBuckets());
  phase_sync = &phases.Add({{"phase", "sync"}}, PhaseBuckets());
  phase_checkpoint = &phases.Add({{"phase", "checkpoint"}}, PhaseBuckets());
  samples =
      Directions(CounterFamily(r, "duet_learner_samples_total", "Samples trained on."));
  tokens = Directions(
      CounterFamily(r, "duet_learner_tokens_total", "Output tokens trained on."));
  groups = Directions(CounterFamily(r, "duet_learner_groups_total",
                                    "Groups (K samples of one input) trained on."));
  stale_samples_dropped = Directions(
      CounterFamily(r, "duet_learner_stale_samples_dropped_total",
                    "Samples refused as older than the lag bound (async mode)."));
  loss = G(r, "duet_learner_loss", "Objective of the last update.");
  kl = G(r, "duet_learner_kl", "Mean KL to the reference of the last update.");
  grad_norm = G(r, "duet_learner_grad_norm",
                "Global gradient norm before clipping, last update.");
  learning_rate = G(r, "duet_learner_learning_rate", "Learning rate of the last update.");
  reward_mean = Directions(
      GaugeFamily(r, "duet_learner_reward_mean", "Mean self-reward of the last step."));
  reward_std = Directions(GaugeFamily(r, "duet_learner_reward_std",
                                      "Standard deviation of the last step's rewards."));
  reward_group_std = Directions(
      GaugeFamily(r, "duet_learner_reward_group_std",
                  "Mean over groups of the within-group reward standard deviation."));
  zero_variance_groups_ratio = Directions(
      GaugeFamily(r, "duet_learner_zero_variance_groups_ratio",
                  "Fraction of the last step's groups whose K rewards are equal."));
  advantage_std =
      Directions(GaugeFamily(r, "duet_learner_advantage_std",
                             "Standard deviation of the last step's advantages."));
  dlogp = G(r, "duet_learner_dlogp",
            "Max abs(learner - worker) log-prob of the last step at the same version.");
  policy_version =
      G(r, "duet_learner_policy_version", "Version of the policy after the last update.");
  sample_lag_max = G(r, "duet_learner_sample_lag_max_versions",
                     "Largest sample lag of the last update.");
  sample_lag_bound =
      G(r, "duet_learner_sample_lag_bound_versions", "Largest lag the updater accepts.");
  checkpoint_timestamp =
      G(r, "duet_learner_checkpoint_timestamp_seconds",
        "When the last checkpoint was written (the start time until the first).");
  checkpoint_timestamp->SetToCurrentTime();
  checkpoint_step = G(r, "duet_learner_checkpoint_step", "Step of the last checkpoint.");
  checkpoint_failures =
      C(r, "duet_learner_checkpoint_failures_total", "Checkpoints that failed to write.");
}

CoordinatorMetrics::CoordinatorMetrics(Registry& r) {
  live_workers = Roles(
      GaugeFamily(r, "duet_coordinator_live_workers", "Workers in the lease registry."));
  draining_workers = Roles(GaugeFamily(r, "duet_coordinator_draining_workers",
                                       "Workers told to leave that still hold items."));
  lost_workers = Roles(CounterFamily(r, "duet_coordinator_lost_workers_total",
                                     "Workers dropped because their lease expired."));
  left_workers = Roles(CounterFamily(r, "duet_coordinator_left_workers_total",
                                     "Workers that left the run (Deregister)."));
  registrations = Roles(CounterFamily(r, "duet_coordinator_registrations_total",
                                      "Accepted registrations."));
  late_results_refused = Roles(
      CounterFamily(r, "duet_coordinator_late_results_refused_total",
                    "Results from lost workers, refused (their items went to others)."));
  worker_errors = Roles(CounterFamily(
      r, "duet_coordinator_worker_errors_total",
      "Error results and missed item deadlines, charged to the worker that made them."));
  quarantined_workers = Roles(CounterFamily(
      r, "duet_coordinator_quarantined_workers_total",
      "Workers quarantined after repeated errors (each also counts as lost)."));
  items_timed_out = Roles(CounterFamily(
      r, "duet_coordinator_items_timed_out_total",
      "Items taken back from their worker at their deadline and issued again."));
  items_queued = Roles(
      GaugeFamily(r, "duet_coordinator_items_queued", "Items waiting for a worker."));
  items_leased =
      Roles(GaugeFamily(r, "duet_coordinator_items_leased", "Items held by a worker."));
  items_enqueued =
      Roles(CounterFamily(r, "duet_coordinator_items_enqueued_total", "Items created."));
  items_completed = Roles(CounterFamily(r, "duet_coordinator_items_completed_total",
                                        "Items whose first result was accepted."));
  items_reissued = Roles(
      CounterFamily(r, "duet_coordinator_items_reissued_total", "Items queued again."));
  lease_expirations = Roles(CounterFamily(r, "duet_coordinator_lease_expirations_total",
                                          "Leases that expired before a result came."));
  duplicate_completions = Roles(
      CounterFamily(r, "duet_coordinator_duplicate_completions_total",
                    "Results refused for an item not in flight (duplicates, late)."));
  item_wait_seconds =
      Roles(HistogramFamily(r, "duet_coordinator_item_wait_seconds",
                            "Per item: from being queued to being leased."),
            WaitBuckets());
  item_service_seconds =
      Roles(HistogramFamily(r, "duet_coordinator_item_service_seconds",
                            "Per item: from lease to accepted result."),
            PhaseBuckets());
  worker_wait_seconds =
      Roles(HistogramFamily(r, "duet_coordinator_worker_wait_seconds",
                            "Per PullWork: from the call to an item or an empty answer."),
            WaitBuckets());
  worker_idle_seconds =
      Roles(CounterFamily(r, "duet_coordinator_worker_idle_seconds_total",
                          "Worker-seconds in PullWork while the role's work was open."));
  work_open_seconds =
      Roles(CounterFamily(r, "duet_coordinator_work_open_seconds_total",
                          "Seconds during which the role's work was open."));
  worker_version_lag_max =
      Roles(GaugeFamily(r, "duet_coordinator_worker_version_lag_max_versions",
                        "Max over workers of (published - confirmed version)."));
  pool_desired_workers = Roles(
      GaugeFamily(r, "duet_pool_desired_workers",
                  "The learner's recommendation for the pool's size (docs/metrics.md)."));
  pool_items_waiting =
      Roles(GaugeFamily(r, "duet_pool_items_waiting",
                        "Mean items waiting for a worker while work was open."));
  pool_idle_workers =
      Roles(GaugeFamily(r, "duet_pool_idle_workers",
                        "Mean workers waiting for an item while work was open."));
  pool_open_ratio = Roles(GaugeFamily(
      r, "duet_pool_open_ratio", "Fraction of the window the role's work was open."));
  items_failed_ = &CounterFamily(r, "duet_coordinator_items_failed_total",
                                 "Items that failed, by the worker's code.");
}

Counter& CoordinatorMetrics::ItemsFailed(bool is_rollout, int code) {
  return items_failed_->Add({{"role", is_rollout ? "rollout" : "scorer"},
                             {"code", std::string(CodeName(code))}});
}

WeightsMetrics::WeightsMetrics(Registry& r) {
  version = G(r, "duet_weights_version",
              "Learner: version last published; worker: version it serves.");
  broadcasts = C(r, "duet_weights_broadcasts_total",
                 "Learner: broadcasts started; worker: broadcasts received.");
  broadcast_seconds = H(r, "duet_weights_broadcast_seconds",
                        "Duration of each weight broadcast.", PhaseBuckets());
  broadcast_size_bytes =
      H(r, "duet_weights_broadcast_size_bytes",
        "Bytes of each broadcast (flattened parameters).", SizeBuckets());
  epoch = G(r, "duet_weights_epoch", "The collective group's formation count.");
  members = G(r, "duet_weights_members",
              "Ranks in the collective group, the learner included.");
  bootstrap_bytes =
      C(r, "duet_weights_bootstrap_bytes_total", "Bytes of gRPC weight streams.");
  failures_ = &CounterFamily(r, "duet_weights_broadcast_failures_total",
                             "Broadcasts that failed, by code.");
  for (int code : {15, 4, 14, 13}) BroadcastFailures(code);
  fetches_ = &CounterFamily(r, "duet_weights_bootstrap_fetches_total",
                            "gRPC weight streams (FetchWeights).");
  BootstrapFetches(0);
}

Counter& WeightsMetrics::BroadcastFailures(int code) {
  return failures_->Add({{"code", std::string(CodeName(code))}});
}
Counter& WeightsMetrics::BootstrapFetches(int code) {
  return fetches_->Add({{"code", std::string(CodeName(code))}});
}

RolloutMetrics::RolloutMetrics(Registry& r) {
  samples =
      Directions(CounterFamily(r, "duet_rollout_samples_total", "Samples generated."));
  tokens = Directions(
      CounterFamily(r, "duet_rollout_tokens_total", "Output tokens generated."));
  batch_seconds = Directions(
      HistogramFamily(r, "duet_rollout_batch_seconds", "Latency of each decoded batch."),
      PhaseBuckets());
  batch_rows =
      Directions(HistogramFamily(r, "duet_rollout_batch_rows",
                                 "Rows per decoded batch (guidance rows included)."),
                 RowsBuckets());
  policy_lag =
      H(r, "duet_rollout_policy_lag_versions",
        "Per item: announced version - version the samples came from.", LagBuckets());
}

ScorerMetrics::ScorerMetrics(Registry& r) {
  pairs =
      Directions(CounterFamily(r, "duet_scorer_pairs_total", "Reversed pairs scored."));
  batch_seconds =
      Directions(HistogramFamily(r, "duet_scorer_batch_seconds",
                                 "Latency of each teacher-forced scoring batch."),
                 PhaseBuckets());
  batch_rows =
      Directions(HistogramFamily(r, "duet_scorer_batch_rows", "Rows per scoring batch."),
                 RowsBuckets());
}

WorkerMetrics::WorkerMetrics(Registry& r) {
  idle_seconds =
      C(r, "duet_worker_idle_seconds_total", "Seconds spent waiting in PullWork.");
  busy_ratio =
      G(r, "duet_worker_busy_ratio", "Fraction of the last 60 s spent working on items.");
  items_ = &CounterFamily(r, "duet_worker_items_total",
                          "Items this worker finished, by the code it reported.");
  Items(0);
}

Counter& WorkerMetrics::Items(int code) {
  return items_->Add({{"code", std::string(CodeName(code))}});
}

}  // namespace duet::metrics
