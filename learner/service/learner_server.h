#ifndef DUET_LEARNER_SERVICE_LEARNER_SERVER_H_
#define DUET_LEARNER_SERVICE_LEARNER_SERVER_H_

// The learner process: serves duet.v1.Coordinator (and grpc.health.v1), hands rollout and
// score work to the worker pools, turns rewards into updates, checkpoints, and broadcasts
// each new version to every worker over c10d (a TCPStore it hosts; Gloo on CPU, NCCL for
// CUDA tensors), with the gRPC weight stream for workers without a collective seat.
//
// Lifecycle: Start() binds the server and the store; Run() waits for the workers, forms
// the collective, trains, and ends the run (workers are told to shut down). Stop() (from
// a signal) makes Run() finish its current step, write a checkpoint and return OK.
//
// Each step: RlLoop::RunStep (collect, train), then the weight sync. In asynchronous mode
// (recipe max_lag > 0) RunStep also dispatches the collections of the next max_lag steps,
// after the sync of the version they are requested at; those items keep the workers busy
// while the learner trains and syncs. A sync waits for each worker's current item (a
// worker takes its sync item next), so a rollout in flight finishes with the weights it
// started with; the collective timeout must exceed one item's duration. Collections in
// flight at a stop are abandoned (not checkpointed): a resumed run collects those steps
// again, at the resumed version.
//
// Parts: WeightSyncManager (broadcast epochs and the weight sync) and RunState (the
// output folder: checkpoints, resume, metrics log, final state) hold the logic and have
// unit tests with fakes; this class wires them to the gRPC server, the health probes and
// the telemetry.
//
// Thread-safety: Start/Run from one thread; Stop from any thread.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/rpc/health_server.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/collective.h"
#include "common/world/bundle.h"
#include "learner/recipe.h"
#include "learner/rl_loop.h"
#include "learner/service/coordinator_service.h"
#include "learner/service/learner_telemetry.h"
#include "learner/service/weight_sync_manager.h"
#include "learner/service/work_queue.h"

namespace duet {

struct LearnerOptions {
  Recipe recipe;
  std::string address = "127.0.0.1:0";  // gRPC listen address
  // The learner's data-plane address: its Gloo transport listens there only. (The ranks
  // meet through the learner's rendezvous store, reached over the gRPC service: no store
  // port of its own.)
  std::string store_host = "127.0.0.1";
  std::string auth_token;  // empty: auth disabled
  TransportSecurity tls;
  bool resume = false;
  absl::Duration worker_timeout = absl::Minutes(5);
  // Bound on one c10d rendezvous or broadcast; past it the sync falls back to the gRPC
  // weight stream for the workers that did not confirm, and the next sync re-forms.
  absl::Duration collective_timeout = absl::Seconds(60);
  // WeightSyncOptions::reform_window (zero: a failed epoch is not re-formed in its sync).
  absl::Duration reform_window = absl::Seconds(5);
  // Bound on the gRPC server's synchronous handler threads (the control calls; a waiting
  // PullWork holds none: callback API); calls past it are RESOURCE_EXHAUSTED. 0:
  // unbounded.
  int max_rpc_threads = 256;
  // Registered workers at most (Register past it is RESOURCE_EXHAUSTED). Each costs ~2 KB
  // here, and a waiting PullWork a few KiB more (docs/benchmarks.md).
  int32_t max_workers = WorkQueue::kDefaultMaxWorkers;
  // Called after every step (progress line, metrics).
  std::function<void(const StepReport&)> on_step;
  // Metrics (docs/metrics.md) are recorded here; null: a private registry, not served.
  std::shared_ptr<prometheus::Registry> metrics_registry;
  // Plaintext grpc.health.v1 on its own port, for probes ("" : none). Readiness (service
  // "duet.ready") is SERVING while the learner steps: its pools formed, not stopping or
  // finished. Liveness (service "") turns NOT_SERVING when the training loop has made no
  // progress for `stall_timeout` (0: never) (common/rpc/health_server.h).
  std::string health_address;
  absl::Duration stall_timeout = absl::Minutes(30);
};

class LearnerServer {
 public:
  // `clock` (not owned; outlives the server): every wait, timeout and duration of the
  // learner's service (the work queue, the weight sync, the probes, the timings in the
  // metrics) is on it. main.cc passes RealClock().
  explicit LearnerServer(LearnerOptions options, Clock* clock = RealClock());
  ~LearnerServer();

  // Loads the model and data, binds the gRPC server and the store. Returns the bound
  // gRPC port.
  absl::StatusOr<int> Start();
  // Trains until recipe.steps or Stop(). Writes checkpoints, `out`/model and
  // `out`/metrics.jsonl.
  absl::Status Run();
  void Stop() { stop_.store(true); }

  // The version and checksum of the weights last published to the workers.
  int64_t served_version() const { return snapshot_.version(); }
  uint64_t checksum() const { return snapshot_.checksum(); }
  // Brings the time-integrated and live-worker metrics up to now (at each scrape).
  void RefreshMetrics() { telemetry_->Refresh(); }
  // The bound port of the health server, 0 without one. After Start().
  int health_port() const { return health_port_; }

 private:
  // Waits until the recipe's minimum pools registered (or Stop()).
  absl::Status AwaitPools();
  void Shutdown();
  // The training loop is making progress (the liveness beat); `ready`: it steps.
  void Beat(std::optional<bool> ready = std::nullopt);

  LearnerOptions options_;
  Clock* const clock_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<world::ModelBundle> bundle_;
  std::unique_ptr<Transformer> reference_;
  std::vector<std::vector<int64_t>> prompts_;
  std::vector<std::vector<int64_t>> images_;
  std::unique_ptr<WorkQueue> queue_;
  WeightSnapshot snapshot_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  // The broadcast epochs' rendezvous (null: collective none). Workers reach it through
  // service_ (Coordinator.Rendezvous), the learner's rank in process.
  std::shared_ptr<RendezvousStore> rendezvous_;
  // Publishes versions into snapshot_ and syncs the workers (broadcast epochs, the gRPC
  // fallback). Made in Start(), after queue_ and rendezvous_.
  std::unique_ptr<WeightSyncManager> sync_;
  std::unique_ptr<PolicyUpdater> updater_;
  std::atomic<int64_t> step_{0};
  std::string run_id_;
  std::unique_ptr<LearnerTelemetry>
      telemetry_;  // made in the constructor, before the queue
  std::unique_ptr<grpc::Server> health_server_;
  int health_port_ = 0;
  std::unique_ptr<HealthReporter> probes_;  // on health_server_; reset before it
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_LEARNER_SERVER_H_
