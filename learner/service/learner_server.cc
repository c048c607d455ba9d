#include "learner/service/learner_server.h"

#include <glog/logging.h>
#include <grpcpp/health_check_service_interface.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/clock.h"
#include "common/base/file_util.h"
#include "common/base/status_macros.h"
#include "common/rpc/health_server.h"
#include "common/rpc/rpc_metrics.h"
#include "common/weights/weight_sync.h"
#include "learner/checkpoint.h"
#include "learner/ledger.h"
#include "learner/rl_data.h"
#include "learner/service/remote_backends.h"
#include "learner/step_record.h"

namespace duet {
namespace {

// Keeps the lines of the metrics log whose "step" is at most `last_step` (all of them
// when the log does not exist yet).
absl::Status TruncateMetricsLog(const std::string& path, int64_t last_step) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) return absl::OkStatus();
  DUET_RETURN_IF_ERROR(text.status());
  std::string kept;
  int dropped = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    const nlohmann::json j =
        nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() > last_step) {
      ++dropped;
      continue;
    }
    absl::StrAppend(&kept, line, "\n");
  }
  if (dropped == 0) return absl::OkStatus();
  LOG(INFO) << "dropped " << dropped << " lines of " << path << " past step " << last_step
            << " (re-run after resume)";
  return WriteFileAtomically(path, kept);
}

}  // namespace

LearnerServer::LearnerServer(LearnerOptions options)
    : options_(std::move(options)),
      telemetry_(
          std::make_unique<LearnerTelemetry>(options_.metrics_registry, RealClock())) {}

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
  queue_ =
      std::make_unique<WorkQueue>(run_id_, RealClock(), WorkQueue::kDefaultMaxWorkers,
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
  DUET_RETURN_IF_ERROR(PublishSnapshot(/*version=*/0));
  RequestLimits limits;
  limits.layout = bundle_->layout;
  limits.max_sequence_tokens = bundle_->model.config().max_position_embeddings;
  // Long-polls may hold at most three quarters of the handler threads (at least 16 stay
  // for the control calls), so a flood of idle workers never starves heartbeats and
  // results.
  if (options_.max_rpc_threads > 0) {
    limits.max_waiting_polls = std::max(
        1, options_.max_rpc_threads - std::max(16, options_.max_rpc_threads / 4));
  }
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
    probes_ = std::make_unique<HealthReporter>(health_server_.get(), RealClock(),
                                               options_.stall_timeout);
    LOG(INFO) << "grpc.health.v1 (plaintext) on port " << health_port_;
  }
  LOG(INFO) << "learner " << run_id_ << " serving on port " << port
            << (rendezvous_ ? ", broadcast rendezvous over the same channel" : "");
  return port;
}

absl::Status LearnerServer::PublishSnapshot(int64_t version) {
  SerializedWeights w = SerializeParameters(bundle_->model.parameters());
  snapshot_.Set(version, w.checksum, std::move(w.bytes));
  return absl::OkStatus();
}

absl::Status LearnerServer::AwaitPools() {
  const Recipe& r = options_.recipe;
  // Wait for the pools in slices, so that Stop() (SIGTERM) ends the wait too.
  const absl::Time deadline = absl::Now() + options_.worker_timeout;
  for (auto [role, count] : {std::pair{v1::ROLE_ROLLOUT, r.rollout_workers},
                             std::pair{v1::ROLE_SCORER, r.scorer_workers}}) {
    for (;;) {
      Beat(/*ready=*/false);
      const absl::Status s = queue_->AwaitWorkers(
          role, count, std::min(absl::Seconds(1), deadline - absl::Now()));
      if (s.ok()) break;
      if (stop_.load()) return absl::OkStatus();
      if (!absl::IsDeadlineExceeded(s) || absl::Now() >= deadline) return s;
    }
  }
  return absl::OkStatus();
}

void LearnerServer::Beat(std::optional<bool> ready) {
  if (!probes_) return;
  probes_->Beat();
  if (ready.has_value()) probes_->SetReady(*ready);
}

void LearnerServer::FormEpoch(const std::vector<WorkerRecord>& workers) {
  collective_.reset();
  ++epoch_;
  if (!epoch_prefix_.empty()) rendezvous_->ClosePrefix(epoch_prefix_);
  epoch_prefix_ = NewStorePrefix();
  rendezvous_->OpenPrefix(epoch_prefix_);
  epoch_membership_ = queue_->membership_version();
  epoch_ranks_.clear();
  for (const WorkerRecord& w : workers)
    epoch_ranks_[w.id] = static_cast<int32_t>(epoch_ranks_.size()) + 1;
  queue_->SetRanks(epoch_ranks_);
}

void LearnerServer::NoteAbsentMembers() {
  // Gloo's rendezvous writes one key per rank under the group's prefix, named by the rank
  // ("<prefix>/<device>/<rank>"): the ranks with a key joined.
  std::set<int32_t> joined;
  for (const std::string& key : rendezvous_->KeysUnder(epoch_prefix_)) {
    const size_t slash = key.rfind('/');
    int32_t rank = 0;
    if (slash != std::string::npos && absl::SimpleAtoi(key.substr(slash + 1), &rank))
      joined.insert(rank);
  }
  if (joined.empty())
    return;  // nobody joined (the learner's own rank failed): no one to blame
  for (const auto& [id, rank] : epoch_ranks_) {
    if (joined.count(rank) > 0) {
      absent_.erase(id);
      continue;
    }
    Absent& a = absent_[id];
    ++a.misses;
    a.until_sync = syncs_ + 1 + (int64_t{1} << std::min(a.misses, 6));
    LOG(WARNING) << "worker " << id << " (rank " << rank
                 << ") never joined broadcast epoch " << epoch_
                 << ": it gets weights over gRPC until sync " << a.until_sync << " ("
                 << a.misses << " misses)";
  }
}

absl::Status LearnerServer::SyncWorkers(int64_t version) {
  DUET_RETURN_IF_ERROR(PublishSnapshot(version));
  const uint64_t sum = snapshot_.checksum();
  queue_->ExpireSilentWorkers();
  // Syncs go only to workers that have pulled work since registering: a registration
  // that never pulls (it may be a squatter, or still starting) would otherwise hold every
  // member in the rendezvous and the sync until their timeouts. Such a worker catches up
  // over gRPC when its first item asks for a newer version than it holds
  // (common/worker/worker_runtime.h).
  std::vector<WorkerRecord> workers;
  for (const WorkerRecord& w : queue_->Workers()) {
    if (w.pulled) workers.push_back(w);
  }
  ++syncs_;
  std::vector<WorkerRecord> members;
  for (const WorkerRecord& w : workers) {
    auto a = absent_.find(w.id);
    if (a == absent_.end() || a->second.until_sync <= syncs_) members.push_back(w);
  }
  const bool broadcast = rendezvous_ != nullptr && !members.empty();
  bool same_members = members.size() == epoch_ranks_.size();
  for (const WorkerRecord& w : members)
    same_members = same_members && epoch_ranks_.count(w.id) > 0;
  const bool new_epoch =
      broadcast && (!collective_ || epoch_membership_ != queue_->membership_version() ||
                    !same_members);
  if (new_epoch) FormEpoch(members);
  auto submit = [&](const WorkerRecord& w, bool over_grpc) {
    v1::WorkItem item;
    item.set_policy_version(version);
    v1::WeightSync* sync = item.mutable_sync();
    sync->set_version(version);
    sync->set_checksum(sum);
    sync->set_fetch_over_grpc(over_grpc);
    if (!over_grpc) {
      sync->set_epoch(epoch_);
      sync->set_rank(epoch_ranks_.at(w.id));
      sync->set_world_size(static_cast<int32_t>(epoch_ranks_.size()) + 1);
      sync->set_store_prefix(epoch_prefix_);
    }
    return queue_->Submit(w.role, std::move(item), w.id);
  };
  std::vector<std::string> ids;
  for (const WorkerRecord& w : workers) {
    ids.push_back(submit(w, /*over_grpc=*/!broadcast || epoch_ranks_.count(w.id) == 0));
  }
  if (broadcast) {
    absl::Status c10d = absl::OkStatus();
    bool rendezvous_timed_out = false;
    if (new_epoch) {
      CollectiveOptions c;
      c.backend = options_.recipe.collective;
      c.rendezvous = rendezvous_;
      // Leases keep running while the learner waits in the rendezvous: a member lost
      // meanwhile (silent past its lease, or gone) ends this epoch at once instead of at
      // the collective timeout.
      std::set<std::string> member_ids;
      for (const auto& [id, rank] : epoch_ranks_) member_ids.insert(id);
      c.abandon = [this, member_ids] {
        queue_->ExpireSilentWorkers();
        return !queue_->AllRegistered(member_ids);
      };
      c.store_host = options_.store_host;
      // The learner's Gloo transport listens only on the address the operator gave for
      // the data plane (the one workers are told to reach), not on every interface.
      c.device_hostname = options_.store_host;
      c.rank = 0;
      c.world_size = static_cast<int>(epoch_ranks_.size()) + 1;
      c.group_prefix = epoch_prefix_;
      c.timeout = options_.collective_timeout;
      const auto t0 = std::chrono::steady_clock::now();
      absl::StatusOr<std::unique_ptr<Collective>> formed = CreateCollective(c);
      if (formed.ok()) {
        collective_ = *std::move(formed);
        telemetry_->RecordCollective(c.world_size);
        LOG(INFO) << "broadcast epoch " << epoch_ << " formed: " << c.world_size
                  << " ranks (" << c.backend << ") in "
                  << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                         .count()
                  << " s";
      } else {
        c10d = formed.status();
        // Only a rendezvous that ran out of time says who never came; one abandoned for a
        // lost member may have ended before the others had time to join.
        rendezvous_timed_out = absl::IsDeadlineExceeded(c10d);
      }
    }
    if (c10d.ok() && collective_) {
      WeightBroadcaster broadcaster(
          collective_.get(), options_.recipe.bucket_mb << 20,
          WeightMacKey::Derive(options_.auth_token, epoch_prefix_));
      c10d = broadcaster.Broadcast(bundle_->model.parameters(), version);
    }
    if (!c10d.ok()) {
      // A member died, stalled or left: this epoch is over. The workers' own c10d calls
      // fail too (their sync results say so) and they get the weights over gRPC below.
      LOG(WARNING) << "broadcast epoch " << epoch_ << " failed: " << c10d
                   << "; falling back to the gRPC stream";
      if (rendezvous_timed_out) NoteAbsentMembers();
      collective_.reset();
      epoch_membership_ = -1;
    }
  }
  // A worker's confirmation must be of exactly what was published.
  auto confirmed = [&](const v1::CompleteWorkRequest& res) -> absl::Status {
    if (res.has_error()) {
      return absl::Status(
          static_cast<absl::StatusCode>(res.error().code()),
          absl::StrCat("weight sync on ", res.worker_id(), ": ", res.error().message()));
    }
    if (res.sync().version() != version || res.sync().checksum() != sum) {
      return absl::DataLossError(absl::StrCat(
          res.worker_id(), " holds v", res.sync().version(), " checksum ",
          res.sync().checksum(), ", expected v", version, " checksum ", sum));
    }
    return absl::OkStatus();
  };
  // Results of workers lost or gone meanwhile do not count: they sync when they register
  // again.
  auto still_live = [this](const std::string& id) {
    for (const WorkerRecord& w : queue_->Workers()) {
      if (w.id == id) return true;
    }
    return false;
  };
  // One worker never fails the step: one that did not take or confirm its sync in time,
  // or cannot take the weights even over gRPC, is dropped from the run (as if lost: it
  // registers again and fetches the weights then).
  const absl::Duration grace = absl::Seconds(options_.recipe.faults.sync_grace_seconds);
  auto settle = [&](const WorkerRecord& w,
                    const std::optional<v1::CompleteWorkRequest>& res, bool may_retry,
                    std::vector<WorkerRecord>* retry) {
    if (!still_live(w.id)) return;
    if (!res.has_value()) {
      (void)queue_->Evict(w.id, absl::StrCat("did not take or confirm weight sync v",
                                             version, " in time"));
      return;
    }
    if (res->has_error() &&
        may_retry) {  // the c10d path failed for it: the stream is the fallback
      LOG(WARNING) << "weight sync on " << w.id
                   << " failed over c10d: " << res->error().message();
      retry->push_back(w);
      return;
    }
    if (absl::Status s = confirmed(*res); !s.ok()) {
      (void)queue_->Evict(w.id,
                          absl::StrCat("weight sync v", version, ": ", s.message()));
    }
  };
  DUET_ASSIGN_OR_RETURN(auto results,
                        queue_->AwaitWithin(ids, options_.collective_timeout + grace));
  std::vector<WorkerRecord> retry;
  for (size_t i = 0; i < results.size(); ++i)
    settle(workers[i], results[i], /*may_retry=*/broadcast, &retry);
  if (retry.empty()) return absl::OkStatus();
  collective_.reset();
  epoch_membership_ = -1;  // the next sync re-forms the group
  std::vector<std::string> again;
  for (const WorkerRecord& w : retry) again.push_back(submit(w, /*over_grpc=*/true));
  DUET_ASSIGN_OR_RETURN(auto second, queue_->AwaitWithin(again, grace));
  for (size_t i = 0; i < second.size(); ++i)
    settle(retry[i], second[i], /*may_retry=*/false, nullptr);
  return absl::OkStatus();
}

absl::Status LearnerServer::SyncWorkersMetered(int64_t version) {
  const auto t0 = std::chrono::steady_clock::now();
  const absl::Status s = SyncWorkers(version);
  int64_t bytes = 0;
  for (const torch::Tensor& p : bundle_->model.parameters())
    bytes += p.numel() * p.element_size();
  telemetry_->RecordSync(
      version, bytes,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), s);
  telemetry_->RecordWorkerVersions(snapshot_.version(), queue_->Workers());
  return s;
}

absl::Status LearnerServer::CheckpointMetered(int64_t step, int64_t version) {
  const auto t0 = std::chrono::steady_clock::now();
  const absl::Status s = Checkpoint(step, version);
  telemetry_->RecordCheckpoint(
      step, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
      s);
  return s;
}

absl::Status LearnerServer::Checkpoint(int64_t step, int64_t version) {
  nlohmann::json state = {{"step", step},
                          {"policy_version", version},
                          {"run_id", run_id_},
                          {"recipe", RecipeToYaml(options_.recipe)}};
  return WriteCheckpoint(JoinPath(options_.recipe.out, "checkpoints"), step,
                         bundle_->model, *optimizer_, state.dump(2), /*keep=*/1);
}

absl::Status LearnerServer::Run() {
  const Recipe& r = options_.recipe;
  DUET_RETURN_IF_ERROR(MakeDirs(r.out));
  DUET_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(r.out, "recipe.yaml"), RecipeToYaml(r)));
  updater_ = std::make_unique<PolicyUpdater>(&bundle_->model, reference_.get(),
                                             bundle_->layout, r.optimizer);
  optimizer_ = &updater_->optimizer();
  int64_t start = 0;
  int64_t start_version = 0;
  if (options_.resume) {
    DUET_ASSIGN_OR_RETURN(auto ckpt, RestoreLatestCheckpoint(
                                         JoinPath(r.out, "checkpoints"), bundle_->model));
    if (ckpt.has_value()) {
      DUET_RETURN_IF_ERROR(optimizer_->LoadState(ckpt->optimizer));
      nlohmann::json state = nlohmann::json::parse(ckpt->state_json, nullptr, false);
      if (state.is_discarded() || !state.contains("policy_version")) {
        return absl::DataLossError(absl::StrCat(ckpt->dir, "/state.json is malformed"));
      }
      start = ckpt->step;
      start_version = state["policy_version"].get<int64_t>();
      LOG(INFO) << "resumed from " << ckpt->dir << ": step " << start
                << ", policy version " << start_version;
    }
  }
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
    nlohmann::json final_state = {
        {"step", start},
        {"policy_version", start_version},
        {"checksum", WeightChecksum(bundle_->model.parameters())},
        {"workers", nlohmann::json::array()},
        {"stopped_before_pools_formed", true}};
    DUET_RETURN_IF_ERROR(
        WriteFileAtomically(JoinPath(r.out, "final_state.json"), final_state.dump(2)));
    LOG(INFO) << "stopped before the worker pools formed, at step " << start;
    Shutdown();
    return absl::OkStatus();
  }
  // Workers start from the base weights.
  if (start_version > 0) DUET_RETURN_IF_ERROR(SyncWorkersMetered(start_version));

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
  const std::string metrics_path = JoinPath(r.out, "metrics.jsonl");
  // A resumed run repeats the steps after its checkpoint: their old lines go, so that
  // every step appears once.
  DUET_RETURN_IF_ERROR(TruncateMetricsLog(metrics_path, start));
  std::ofstream metrics(metrics_path, std::ios::app);
  DUET_ASSIGN_OR_RETURN(LedgerWriter ledger,
                        LedgerWriter::Open(JoinPath(r.out, "ledger.jsonl"), start));
  int64_t step = start;
  bool dirty = false;
  for (; step < r.steps && !stop_.load(); ++step) {
    Beat(/*ready=*/true);
    const auto step_t0 = std::chrono::steady_clock::now();
    // Asynchronous mode: this also dispatches the collections of the next max_lag steps,
    // at the version the workers were just sent.
    DUET_ASSIGN_OR_RETURN(StepReport report, loop.RunStep(step, /*end_step=*/r.steps));
    if (report.samples_dropped_stale > 0) {
      LOG(WARNING) << "step " << step + 1 << ": dropped " << report.samples_dropped_stale
                   << " samples older than v" << loop.version() - 1 - loop_recipe.max_lag;
    }
    double sync_seconds = 0;
    if (loop.version() % r.sync_every == 0) {
      const auto t0 = std::chrono::steady_clock::now();
      DUET_RETURN_IF_ERROR(SyncWorkersMetered(loop.version()));
      sync_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    step_ = step + 1;
    dirty = true;
    StepRecord record = StepRecord::FromReport(report);
    record.sync_s = sync_seconds;
    record.checksum = snapshot_.checksum();
    metrics << StepRecordToJson(record).dump() << "\n" << std::flush;
    DUET_RETURN_IF_ERROR(ledger.Append(step + 1, report.trained));
    if (options_.on_step) options_.on_step(report);
    telemetry_->RecordStep(
        report, r.optimizer.lr, sync_seconds,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - step_t0)
            .count());
    telemetry_->UpdatePools(r.rollout_workers, r.scorer_workers);
    if ((step + 1) % r.checkpoint_every == 0) {
      DUET_RETURN_IF_ERROR(CheckpointMetered(step + 1, loop.version()));
      dirty = false;
    }
  }
  Beat(/*ready=*/false);  // stopping or finished: no longer stepping
  if (dirty) DUET_RETURN_IF_ERROR(CheckpointMetered(step, loop.version()));
  if (loop.version() % r.sync_every != 0)
    DUET_RETURN_IF_ERROR(SyncWorkersMetered(loop.version()));
  DUET_RETURN_IF_ERROR(world::SaveBundle(JoinPath(r.out, "model"), *bundle_));
  // Where every process ended: the learner's version and checksum, and what each worker
  // confirmed at the last sync (tests and operators compare them). A frozen judge (a
  // scorer under frozen_scorer) verifies and confirms every sync but keeps computing with
  // the base weights: its entry says so ("weights": "base"), the others' "policy".
  nlohmann::json final_state = {{"step", step},
                                {"policy_version", loop.version()},
                                {"checksum", snapshot_.checksum()},
                                {"workers", nlohmann::json::array()}};
  for (const WorkerRecord& w : queue_->Workers()) {
    final_state["workers"].push_back(
        {{"id", w.id},
         {"name", w.name},
         {"rank", w.rank},
         {"policy_version", w.confirmed_version},
         {"checksum", w.confirmed_checksum},
         {"items_completed", w.items_completed},
         {"weights", r.frozen_scorer && w.role == v1::ROLE_SCORER ? "base" : "policy"}});
  }
  DUET_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(r.out, "final_state.json"), final_state.dump(2)));
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
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
    server_.reset();
  }
  probes_.reset();
  if (health_server_) {
    health_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    health_server_.reset();
  }
  collective_.reset();
}

}  // namespace duet
