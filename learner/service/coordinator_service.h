#ifndef DUET_LEARNER_SERVICE_COORDINATOR_SERVICE_H_
#define DUET_LEARNER_SERVICE_COORDINATOR_SERVICE_H_

// The learner's gRPC face (duet.v1.Coordinator). Handlers are thin: check the token,
// validate the request, call the WorkQueue / weight snapshot, map the status across
// unchanged. PullWork, the long-poll, uses gRPC's callback API: a waiting poll is a
// record in the WorkQueue (PullAsync) and holds no thread, so thousands of idle workers
// cost a few KiB each and never crowd out the control calls, which use the synchronous
// API (one handler thread each, for as long as they run: never long).
//
// Thread-safety: thread-safe (the state it touches is).

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/model/token_layout.h"
#include "common/rpc/proto_convert.h"
#include "common/weights/rendezvous_store.h"
#include "common/weights/weight_stream.h"
#include "duet/v1/coordinator.grpc.pb.h"
#include "learner/service/work_queue.h"

namespace duet {

// What Register tells a worker about the collective and the run.
struct RendezvousInfo {
  std::string run_id;
  std::string store_host;
  int32_t store_port = 0;
  int32_t world_size = 1;
  std::string backend = "gloo";
  bool frozen_scorer = false;
  std::string store_prefix = "duet";  // the group's c10d key prefix (random per run)
  RunRewards rewards;                 // what scorers compute (the recipe's)
  bool rendezvous_over_grpc = false;  // epochs meet through Coordinator.Rendezvous
};

// Limits requests are validated against.
struct RequestLimits {
  TokenLayout layout;                // token ids results must respect
  int64_t max_sequence_tokens = 64;  // the model's context: a whole training row
  int64_t max_rows = 4096;
  // At most this many PullWork calls wait at once (0: no bound). Past the bound a
  // PullWork is answered at once (an item when one is queued for the caller, else
  // RESOURCE_EXHAUSTED with a retry hint). A waiting poll holds no thread (callback API),
  // and each worker has at most one, so duet-learner leaves it unbounded: the registry's
  // cap (--max_workers) bounds the polls.
  int32_t max_waiting_polls = 0;
};

class CoordinatorService final
    : public v1::Coordinator::WithCallbackMethod_PullWork<v1::Coordinator::Service> {
 public:
  // Borrowed pointers must outlive the service. `status_fn` fills step/done of RunStatus.
  CoordinatorService(WorkQueue* queue, WeightSnapshot* weights, RendezvousInfo rendezvous,
                     std::string auth_token, RequestLimits limits,
                     std::function<void(v1::RunStatus*)> status_fn);

  grpc::Status Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                        v1::RegisterResponse* resp) override;
  grpc::ServerUnaryReactor* PullWork(grpc::CallbackServerContext* ctx,
                                     const v1::PullWorkRequest* req,
                                     v1::PullWorkResponse* resp) override;
  grpc::Status CompleteWork(grpc::ServerContext* ctx, const v1::CompleteWorkRequest* req,
                            v1::CompleteWorkResponse* resp) override;
  grpc::Status FetchWeights(grpc::ServerContext* ctx, const v1::FetchWeightsRequest* req,
                            grpc::ServerWriter<v1::WeightChunk>* writer) override;
  grpc::Status GetRunStatus(grpc::ServerContext* ctx, const v1::GetRunStatusRequest* req,
                            v1::RunStatus* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override;
  grpc::Status Deregister(grpc::ServerContext* ctx, const v1::DeregisterRequest* req,
                          v1::DeregisterResponse* resp) override;

  // Serves `store` (not owned; outlives the service) as Coordinator.Rendezvous; without
  // one the call is FAILED_PRECONDITION. REQUIRES: called before the server starts.
  void SetRendezvousStore(RendezvousStore* store) { rendezvous_store_ = store; }
  grpc::Status Rendezvous(grpc::ServerContext* ctx, const v1::RendezvousRequest* req,
                          v1::RendezvousResponse* resp) override;

  // PullWork calls waiting now (for tests and metrics).
  int waiting_polls() const { return waiting_polls_.load(); }

 private:
  // PullWork's answer once the queue has one: `item` as the response, Cancelled as
  // `shutdown`, errors with a retry hint. `refused_seat`: the call found no seat among
  // the waiting polls and so did not wait.
  grpc::Status PullAnswer(grpc::CallbackServerContext* ctx, bool refused_seat,
                          absl::StatusOr<std::optional<v1::WorkItem>> item,
                          v1::PullWorkResponse* resp) const;
  // What a result must be on its own: token ids in the vocabulary, finite values.
  absl::Status ValidateResult(const v1::CompleteWorkRequest& req) const;
  // What it must be for the item it completes: the same kind, one group per input and k
  // samples per group, images of exactly image_tokens codes and captions of text ids,
  // whole training rows within the model's context, one reward per query, the version
  // and checksum the sync announced. InvalidArgument naming the field otherwise.
  absl::Status ValidateResultForItem(const v1::WorkItem& item,
                                     const v1::CompleteWorkRequest& req) const;

  WorkQueue* queue_;
  WeightSnapshot* weights_;
  const RendezvousInfo rendezvous_;
  const std::string auth_token_;
  const RequestLimits limits_;
  std::function<void(v1::RunStatus*)> status_fn_;
  std::atomic<int> waiting_polls_{0};            // PullWork calls inside the queue's wait
  RendezvousStore* rendezvous_store_ = nullptr;  // set once before serving
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_COORDINATOR_SERVICE_H_
