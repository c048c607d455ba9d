#ifndef DUET_COMMON_WORKER_WORKER_RUNTIME_H_
#define DUET_COMMON_WORKER_WORKER_RUNTIME_H_

// What a rollout or scorer worker process does besides its role's computation: register
// with the learner, join the c10d group for weight broadcasts, pull work items, run the
// role's handler on them, push results, and swap in new weights only after their checksum
// verified, under a lock that the handler holds while it reads the model — so a worker
// never computes with half-updated weights.
//
// Thread-safety: Run() is called once, from one thread; RequestStop() from any thread
// (e.g. a signal-watching thread).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/model/token_layout.h"
#include "common/model/transformer.h"
#include "common/rpc/rpc_util.h"
#include "common/weights/collective.h"
#include "common/weights/weight_sync.h"
#include "duet/v1/coordinator.grpc.pb.h"

namespace duet {

struct WorkerOptions {
  v1::Role role = v1::ROLE_ROLLOUT;
  std::string name;
  int32_t capacity = 256;
  std::string auth_token;
  absl::Duration rpc_timeout = absl::Seconds(30);
  absl::Duration collective_timeout = absl::Seconds(60);
  // While it computes an item, the worker renews its lease this often (the learner's
  // lease_seconds is 30 by default).
  // At most: a learner whose lease is shorter than 3 heartbeats
  // (RegisterResponse.lease_ms) gets one every lease / 3.
  absl::Duration heartbeat_every = absl::Seconds(5);
  int32_t pull_wait_ms = 2000;
  // Address this worker's Gloo transport listens on; empty: 127.0.0.1 when the learner's
  // store is on loopback, else the address of this host's name.
  std::string collective_address;
  // How many times to retry Register while the learner is not up yet.
  int register_attempts = 120;
  // Backpressure: a call refused with RESOURCE_EXHAUSTED (the learner's registry or
  // threads are full, or the learner's retry hint) is retried after a capped exponential
  // backoff with full jitter, never sooner than the learner's hint; CompleteWork is
  // retried at most this many times, so that a result is not dropped on a busy learner.
  absl::Duration backoff_base = absl::Milliseconds(100);
  absl::Duration backoff_cap = absl::Seconds(5);
  int complete_attempts = 20;
  // The channel's TLS settings, for diagnosing a refused connection (rpc_util.h).
  TransportSecurity security;
  // Waits between retries are measured on this clock (not owned; never null).
  Clock* clock = RealClock();
  // Told of every accepted registration (the run's settings, e.g. the scorer's rewards),
  // on the Run() thread, before any item of that registration is handled. An error fails
  // Run(). May be empty.
  std::function<absl::Status(const v1::RegisterResponse&)> on_register;
  // Probes (common/rpc/health_server.h): told at every turn of the pull loop (the
  // liveness beat) whether this worker is in the run: registered and in contact with the
  // learner (its readiness). On the Run() thread. May be empty.
  std::function<void(bool in_run)> on_progress;
  // Metrics: told of every item this worker finished (its result, the handler's status,
  // the seconds it took, the version it now holds), on the Run() thread. May be empty.
  std::function<void(const v1::WorkItem& item, const v1::CompleteWorkRequest& result,
                     const absl::Status& handled, double seconds, int64_t version)>
      on_item;
};

// The role's computation: turns a rollout or score item into a result (fills `result`'s
// rollout/score field). Called with the model's reader lock held.
using WorkHandler = std::function<absl::Status(const Transformer& model, int64_t version,
                                               const v1::WorkItem& item,
                                               v1::CompleteWorkRequest* result)>;

class WorkerRuntime {
 public:
  // `model` holds the base weights (from the model folder) and is owned by the runtime.
  WorkerRuntime(std::shared_ptr<v1::Coordinator::StubInterface> stub, Transformer model,
                WorkerOptions options, WorkHandler handler);
  ~WorkerRuntime();

  // Registers, joins the collective, then serves work until the learner says the run is
  // over (OK), RequestStop() is called (OK), or an unrecoverable error happens. For an
  // item whose policy_version is newer than the version this worker holds, it first
  // fetches the current weights over gRPC (the learner sends syncs only to workers that
  // have pulled, so a worker that registered before a sync catches up so); still behind,
  // the item is answered with a FAILED_PRECONDITION error result, never computed (a
  // frozen scorer keeps the base weights on purpose and is exempt). An older one is
  // computed with the weights held (asynchronous mode: a weight sync reached the worker
  // while the item waited; in synchronous mode items always ask for exactly the version
  // held), and the result's policy_version says which version produced it.
  absl::Status Run();
  void RequestStop() { stop_.store(true); }

  int64_t version() const;
  uint64_t checksum() const;
  std::string worker_id() const;

 private:
  absl::Status Register();
  absl::Status HandleSync(const v1::WorkItem& item, v1::CompleteWorkRequest* result);
  absl::Status FetchWeightsOverGrpc(int64_t* version, uint64_t* checksum);
  absl::Status SendResult(const v1::CompleteWorkRequest& result);
  // Joins the broadcast epoch `sync` names (leaving the old group) unless already in it.
  absl::Status JoinEpoch(const v1::WeightSync& sync);
  void LeaveCollective();
  // Renews the lease every `options_.heartbeat_every` until `done` is notified.
  void HeartbeatUntil(absl::Notification* done);
  // Sleeps before retry `attempt` of a refused call (see WorkerOptions::backoff_*).
  void BackOff(int attempt, const grpc::ClientContext& refused);

  std::shared_ptr<v1::Coordinator::StubInterface> stub_;
  WorkerOptions options_;
  WorkHandler handler_;
  std::atomic<bool> stop_{false};
  absl::BitGen jitter_;    // the Run() thread's
  std::string worker_id_;  // the Run() thread's copy
  std::string session_;    // from the registration; every call in our name carries it
  bool polled_ = false;    // a PullWork of this registration was answered
  bool frozen_ = false;    // a frozen scorer verifies broadcasts but keeps its weights
  std::unique_ptr<Collective> collective_;
  std::unique_ptr<WeightReceiver> receiver_;
  int64_t epoch_ = -1;        // the broadcast epoch collective_ belongs to
  absl::Time registered_at_;  // of the current registration
  // options_.heartbeat_every, shortened to the learner's lease / 3 at registration.
  // Written by Register on the Run thread, read by an item's heartbeat thread, which Run
  // joins before it can register again: never at once.
  absl::Duration heartbeat_every_ = absl::Seconds(5);
  std::string store_host_;  // from the registration: where the learner's store is
  int32_t store_port_ = 0;
  bool rendezvous_over_grpc_ = false;  // epochs meet through Coordinator.Rendezvous
  std::string collective_backend_;
  torch::Tensor staging_;  // received weights, verified before they are applied

  mutable absl::Mutex mu_;  // readers compute with the model; the writer swaps weights
  Transformer model_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t checksum_ ABSL_GUARDED_BY(mu_) = 0;
  std::string public_worker_id_ ABSL_GUARDED_BY(mu_);  // for other threads
};

}  // namespace duet

#endif  // DUET_COMMON_WORKER_WORKER_RUNTIME_H_
