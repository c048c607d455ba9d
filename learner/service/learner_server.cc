#include "learner/service/learner_server.h"

#include <glog/logging.h>
#include <grpcpp/health_check_service_interface.h>
#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <random>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/clock.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/rpc/health_server.h"
#include "common/rpc/rpc_metrics.h"
#include "common/weights/weight_sync.h"
#include "learner/ledger.h"
#include "learner/rl_data.h"
#include "learner/service/remote_backends.h"
#include "learner/service/run_state.h"
#include "learner/step_record.h"

namespace duet {

LearnerServer::LearnerServer(LearnerOptions options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      telemetry_(std::make_unique<LearnerTelemetry>(options_.metrics_registry, clock)) {}

LearnerServer::~LearnerServer() { Shutdown(); }

absl::StatusOr<int> LearnerServer::Start() {
  const Recipe& r = options_.recipe;
  DUET_RETURN_IF_ERROR(r.Validate());
  DUET_ASSIGN_OR_RETURN(world::ModelBundle bundle, world::LoadBundle(r.model));
  bundle_ = std::make_unique<world::ModelBundle>(std::move(bundle));
  DUET_ASSIGN_OR_RETURN(Transformer reference, Transformer::Load(r.model));
  reference_ = std::make_unique<Transformer>(std::move(reference));
  DUET_RETURN_IF_ERROR(LoadRlInputs(*bundle_, r.data, &prompts_, &images_));
  std::mt19937_64 rng(std::random_device{}());
  run_id_ = absl::StrFormat("run%08x", static_cast<uint32_t>(rng()));
  queue_ = std::make_unique<WorkQueue>(run_id_, clock_, options_.max_workers,
                                       absl::Seconds(r.lease_seconds));
  queue_->SetMetrics(telemetry_->queue());
  queue_->SetFaultPolicy(
      {r.faults.quarantine_after, absl::Seconds(r.faults.quarantine_cooldown_seconds)});
  RendezvousInfo rv;
  rv.run_id = run_id_;
  rv.store_host = options_.store_host;
  rv.rendezvous_over_grpc = true;
  rv.world_size = 0;  // seats come with each broadcast epoch (WeightSync)
  rv.backend = r.collective;
  rv.frozen_scorer = r.frozen_scorer;
  rv.rewards = {r.self_reward, r.reward};
  if (r.collective != "none") rendezvous_ = std::make_shared<RendezvousStore>();
  WeightSyncOptions sync;
  sync.backend = r.collective;
  sync.store_host = options_.store_host;
  sync.collective_timeout = options_.collective_timeout;
  sync.reform_window = options_.reform_window;
  sync.grace = absl::Seconds(r.faults.sync_grace_seconds);
  sync.bucket_bytes = r.bucket_mb << 20;
  sync.topology = *ParseBroadcastTopology(r.broadcast);  // the recipe validated it
  sync.wire_dtype = *ParseWireDtype(r.wire_dtype);
  sync.auth_token = options_.auth_token;
  sync_ = std::make_unique<WeightSyncManager>(std::move(sync), queue_.get(), &snapshot_,
                                              rendezvous_, C10dCollectiveFactory(),
                                              telemetry_.get(), clock_);
  sync_->Publish(/*version=*/0, bundle_->model.parameters());
  RequestLimits limits;
  limits.layout = bundle_->layout;
  limits.max_sequence_tokens = bundle_->model.config().max_position_embeddings;
  // Long-polls hold no handler thread (callback API), so they are not bounded here: each
  // worker has at most one, and the registry bounds the workers.
  service_ = std::make_unique<CoordinatorService>(
      queue_.get(), &snapshot_, rv, options_.auth_token, limits,
      [this](v1::RunStatus* s) { s->set_step(step_.load()); });
  service_->SetRendezvousStore(rendezvous_.get());
  DUET_ASSIGN_OR_RETURN(auto creds, MakeServerCredentials(options_.tls));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.address, creds, &port);
  builder.RegisterService(service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  int64_t weight_bytes = 0;
  for (const torch::Tensor& p : bundle_->model.parameters())
    weight_bytes += p.numel() * p.element_size();
  interceptors.push_back(MakeServerMetricsInterceptor(
      telemetry_->rpc(), [this, weight_bytes](std::string_view method, int code, double) {
        if (method == "FetchWeights") telemetry_->RecordBootstrap(code, weight_bytes);
      }));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  AllowClientKeepalive(&builder);
  if (options_.max_rpc_threads > 0) {
    grpc::ResourceQuota quota("duet-learner");
    quota.SetMaxThreads(options_.max_rpc_threads);
    builder.SetResourceQuota(quota);
  }
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.address));
  }
  if (!options_.health_address.empty()) {
    DUET_ASSIGN_OR_RETURN(health_server_,
                          StartHealthOnlyServer(options_.health_address, &health_port_));
    probes_ = std::make_unique<HealthReporter>(health_server_.get(), clock_,
                                               options_.stall_timeout);
    LOG(INFO) << "grpc.health.v1 (plaintext) on port " << health_port_;
  }
  LOG(INFO) << "learner " << run_id_ << " serving on port " << port
            << (rendezvous_ ? ", broadcast rendezvous over the same channel" : "");
  return port;
}

absl::Status LearnerServer::AwaitPools() {
  const Recipe& r = options_.recipe;
  // Wait for the pools in slices, so that Stop() (SIGTERM) ends the wait too.
  const absl::Time deadline = clock_->Now() + options_.worker_timeout;
  for (auto [role, count] : {std::pair{v1::ROLE_ROLLOUT, r.rollout_workers},
                             std::pair{v1::ROLE_SCORER, r.scorer_workers}}) {
    for (;;) {
      Beat(/*ready=*/false);
      const absl::Status s = queue_->AwaitWorkers(
          role, count, std::min(absl::Seconds(1), deadline - clock_->Now()));
      if (s.ok()) break;
      if (stop_.load()) return absl::OkStatus();
      if (!absl::IsDeadlineExceeded(s) || clock_->Now() >= deadline) return s;
    }
  }
  return absl::OkStatus();
}

void LearnerServer::Beat(std::optional<bool> ready) {
  if (!probes_) return;
  probes_->Beat();
  if (ready.has_value()) probes_->SetReady(*ready);
}

absl::Status LearnerServer::Run() {
  const Recipe& r = options_.recipe;
  RunState state(r.out, run_id_, RecipeToYaml(r), clock_, telemetry_.get());
  DUET_RETURN_IF_ERROR(state.Begin());
  updater_ = std::make_unique<PolicyUpdater>(&bundle_->model, reference_.get(),
                                             bundle_->layout, r.optimizer);
  AdamW& optimizer = updater_->optimizer();
  ResumePoint resumed;
  if (options_.resume) {
    DUET_ASSIGN_OR_RETURN(resumed, state.Resume(bundle_->model, optimizer));
  }
  const int64_t start = resumed.step;
  const int64_t start_version = resumed.version;
  step_ = start;
  const RlRecipe loop_recipe = r.LoopRecipe();
  // The target and the pools the recipe asks for are published before the wait for the
  // workers: a learner waiting for its pools says how many it needs (the autoscaling
  // signal, docs/metrics.md), not 0.
  telemetry_->RecordStart(r.steps, start, start_version, loop_recipe.max_lag);
  telemetry_->UpdatePools(r.rollout_workers, r.scorer_workers);
  DUET_RETURN_IF_ERROR(AwaitPools());
  if (stop_.load() && step_ == start) {
    // Stopped while waiting for the workers: nothing trained, nothing to sync.
    DUET_RETURN_IF_ERROR(state.WriteStoppedBeforePools(
        start, start_version, WeightChecksum(bundle_->model.parameters())));
    LOG(INFO) << "stopped before the worker pools formed, at step " << start;
    Shutdown();
    return absl::OkStatus();
  }
  // Workers start from the base weights.
  if (start_version > 0) {
    DUET_RETURN_IF_ERROR(sync_->SyncMetered(start_version, bundle_->model.parameters()));
  }

  DispatchOptions dispatch;
  dispatch.poison_workers = r.faults.poison_workers;
  dispatch.item_deadline_base = absl::Seconds(r.faults.item_deadline_seconds);
  dispatch.item_deadline_per_row = absl::Seconds(r.faults.item_deadline_per_row_seconds);
  dispatch.pool_wait = dispatch.item_deadline_base;
  auto served = [this] { return snapshot_.version(); };
  RemoteRollout rollout(queue_.get(), served, dispatch);
  RemoteScorer scorer(queue_.get(), served, dispatch);
  RlLoop loop(updater_.get(), &rollout, &scorer, prompts_, images_, loop_recipe,
              start_version);
  // Destroyed before `loop`: however Run() returns, the work queue closes first, so that
  // the collections still in flight (asynchronous mode) end and the loop can join them.
  absl::Cleanup shutdown_first = [this] { Shutdown(); };
  if (loop_recipe.collect_ahead > 0) {
    LOG(INFO) << "asynchronous mode: collecting " << loop_recipe.collect_ahead
              << " steps ahead, samples at most " << loop_recipe.max_lag
              << " versions old";
  }
  telemetry_->UpdatePools(r.rollout_workers, r.scorer_workers);
  // A resumed run repeats the steps after its checkpoint: their old lines go, so that
  // every step appears once.
  DUET_RETURN_IF_ERROR(state.OpenMetricsLog(start));
  DUET_ASSIGN_OR_RETURN(LedgerWriter ledger,
                        LedgerWriter::Open(JoinPath(r.out, "ledger.jsonl"), start));
  int64_t step = start;
  bool dirty = false;
  for (; step < r.steps && !stop_.load(); ++step) {
    Beat(/*ready=*/true);
    const absl::Time step_t0 = clock_->Now();
    // Asynchronous mode: this also dispatches the collections of the next max_lag steps,
    // at the version the workers were just sent.
    DUET_ASSIGN_OR_RETURN(StepReport report, loop.RunStep(step, /*end_step=*/r.steps));
    if (report.samples_dropped_stale > 0) {
      LOG(WARNING) << "step " << step + 1 << ": dropped " << report.samples_dropped_stale
                   << " samples older than v" << loop.version() - 1 - loop_recipe.max_lag;
    }
    double sync_seconds = 0;
    if (loop.version() % r.sync_every == 0) {
      const absl::Time t0 = clock_->Now();
      DUET_RETURN_IF_ERROR(
          sync_->SyncMetered(loop.version(), bundle_->model.parameters()));
      sync_seconds = absl::ToDoubleSeconds(clock_->Now() - t0);
    }
    step_ = step + 1;
    dirty = true;
    StepRecord record = StepRecord::FromReport(report);
    record.sync_s = sync_seconds;
    record.checksum = snapshot_.checksum();
    state.AppendStep(record);
    DUET_RETURN_IF_ERROR(ledger.Append(step + 1, report.trained));
    if (options_.on_step) options_.on_step(report);
    telemetry_->RecordStep(report, r.optimizer.lr, sync_seconds,
                           absl::ToDoubleSeconds(clock_->Now() - step_t0));
    telemetry_->UpdatePools(r.rollout_workers, r.scorer_workers);
    if ((step + 1) % r.checkpoint_every == 0) {
      DUET_RETURN_IF_ERROR(
          state.Checkpoint(step + 1, loop.version(), bundle_->model, optimizer));
      dirty = false;
    }
  }
  Beat(/*ready=*/false);  // stopping or finished: no longer stepping
  if (dirty) {
    DUET_RETURN_IF_ERROR(
        state.Checkpoint(step, loop.version(), bundle_->model, optimizer));
  }
  if (loop.version() % r.sync_every != 0) {
    DUET_RETURN_IF_ERROR(sync_->SyncMetered(loop.version(), bundle_->model.parameters()));
  }
  DUET_RETURN_IF_ERROR(world::SaveBundle(JoinPath(r.out, "model"), *bundle_));
  // Where every process ended: the learner's version and checksum, and what each worker
  // confirmed at the last sync (tests and operators compare them).
  DUET_RETURN_IF_ERROR(state.WriteFinalState(step, loop.version(), snapshot_.checksum(),
                                             queue_->Workers(), r.frozen_scorer));
  LOG(INFO) << (stop_.load() ? "stopped" : "finished") << " at step " << step
            << ", policy version " << loop.version();
  Shutdown();
  return absl::OkStatus();
}

void LearnerServer::Shutdown() {
  if (queue_ && !queue_->closed()) {
    // Items still held (asynchronous mode: collections abandoned at a stop or an error):
    // a worker computing one hears the notice only when it pulls next, after that item.
    const bool busy = queue_->items_held() > 0;
    queue_->Close();
    // Let workers' long-polls return the shutdown notice before the server goes away.
    if (server_) {
      queue_->AwaitShutdownNoticed(busy ? absl::Seconds(options_.recipe.lease_seconds)
                                        : absl::Milliseconds(500));
    }
  }
  if (server_) {
    server_->Shutdown(absl::ToChronoTime(clock_->Now() + absl::Seconds(3)));
    server_.reset();
  }
  probes_.reset();
  if (health_server_) {
    health_server_->Shutdown(absl::ToChronoTime(clock_->Now() + absl::Seconds(1)));
    health_server_.reset();
  }
  if (sync_) sync_->Reset();
}

}  // namespace duet
