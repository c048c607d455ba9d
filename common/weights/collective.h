#ifndef DUET_COMMON_WEIGHTS_COLLECTIVE_H_
#define DUET_COMMON_WEIGHTS_COLLECTIVE_H_

// Collective communication between the learner and the rollout/scorer workers, behind
// one interface so that tests and callers never see c10d. The real implementation is a
// LibTorch c10d process group (Gloo for CPU tensors, NCCL for CUDA tensors where the
// build has CUDA) whose ranks meet through a c10d TCPStore, usually hosted by rank 0.
//
// Errors: c10d throws; the implementation catches in one place and returns a Status:
// InvalidArgument for bad options or tensors, FailedPrecondition for a backend this build
// lacks, Unavailable when the store or a peer cannot be reached (or a peer drops out),
// DeadlineExceeded when the rendezvous or a collective runs past `timeout`.

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/weights/rendezvous_store.h"

namespace duet {

// A fixed group of `world_size()` ranks that run collectives in the same order.
//
// Thread-safety: the methods may be called from any thread; collectives on one object are
// serialized. Every rank must issue the same collectives in the same order (with tensors
// of the same shape and dtype): the interface cannot detect a misaligned sequence, which
// shows up as a hang until `timeout` or as wrong data.
class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo" or "nccl".
  virtual std::string backend() const = 0;

  // Broadcasts `tensor` from rank `root` to every rank, in place; blocks until this
  // rank's part is done (on `root`: the data has been handed off; elsewhere: `tensor`
  // holds root's values). After an Unavailable or DeadlineExceeded error the group is
  // broken; create a new one.
  // REQUIRES: `tensor` defined and contiguous, on CPU for gloo and CUDA for nccl, with
  // the same shape and dtype on every rank; 0 <= root < world_size().
  virtual absl::Status Broadcast(torch::Tensor& tensor, int root) = 0;

  // A point-to-point send or receive in flight (StartSend, StartRecv). Destroying it
  // first waits for it, since the transport may still use the tensor.
  class Pending {
   public:
    virtual ~Pending() = default;
    // Blocks until the send has handed the data off, or the receive has filled the
    // tensor (at most the group's timeout: DeadlineExceeded; Unavailable when the peer is
    // gone); then the tensor may be used again.
    virtual absl::Status Wait() = 0;
  };

  // Point-to-point, for pipelines such as the chain broadcast (weight_sync.h): starts
  // sending `tensor` to rank `dst` under `tag` and returns at once; rank `dst` receives
  // it with StartRecv(…, src = this rank, tag) into a tensor of the same size and dtype.
  // Sends to one peer under one tag are received in the order they were started.
  // The default implementation (fakes) says Unimplemented.
  // REQUIRES: as Broadcast's tensor; nobody touches `tensor` until Wait returns;
  // 0 <= dst < world_size(), dst != rank(); tag >= 0.
  virtual absl::StatusOr<std::unique_ptr<Pending>> StartSend(const torch::Tensor& tensor,
                                                             int dst, int tag);
  // Starts receiving what rank `src` sends under `tag` into `tensor` (posting a receive
  // ahead keeps a pipeline's link busy). Same REQUIRES, with `src`.
  virtual absl::StatusOr<std::unique_ptr<Pending>> StartRecv(const torch::Tensor& tensor,
                                                             int src, int tag);
  // StartRecv, then Wait.
  absl::Status Recv(const torch::Tensor& tensor, int src, int tag);
};

struct CollectiveOptions {
  std::string backend = "gloo";  // or "nccl"
  // Where the ranks meet. Set: through this client (e.g. the learner's RendezvousStore,
  // in process on the learner, over its gRPC service on a worker), and store_port and
  // host_store are ignored. Null: the TCPStore at store_host:store_port.
  std::shared_ptr<RendezvousClient> rendezvous;
  // With `rendezvous`: asked while this rank waits for the others' keys; true ends the
  // rendezvous (Unavailable, "abandoned"), e.g. when a member left meanwhile. May be
  // empty.
  std::function<bool()> abandon;
  // Address of the TCPStore every rank connects to (rank 0's address when it hosts).
  std::string store_host = "127.0.0.1";
  // Port of the TCPStore. 0 is allowed only where this rank hosts the store: the kernel
  // picks a free port, reported through `on_store_ready`.
  int store_port = 0;
  bool host_store = false;  // rank 0 hosts the TCPStore (ignored on other ranks)
  int rank = 0;
  int world_size = 1;
  // Bounds every collective and the Gloo connection setup. The store (connection and
  // rendezvous key waits) gets it rounded up to whole seconds: c10d 1.13 truncates the
  // store's connect timeout to seconds.
  absl::Duration timeout = absl::Seconds(60);
  // Store key prefix (a c10d PrefixStore), so that several groups can share one store.
  // Groups created on the same store need distinct prefixes.
  std::string group_prefix = "duet";
  // Address this rank's Gloo transport binds to. Empty: 127.0.0.1 when `store_host` is
  // a loopback address (every rank on this machine), else this machine's hostname.
  std::string device_hostname;
  // Called on the hosting rank with the store's real port once it listens and before
  // the rendezvous, which blocks until every rank has joined: the place to tell the
  // other ranks the port (e.g. fulfil a promise, spawn the workers).
  std::function<void(int port)> on_store_ready;
};

// Connects to (or hosts) the store and joins the group; blocks until all
// `world_size` ranks have joined or `timeout` passes (DeadlineExceeded).
// FailedPrecondition for "nccl" in a build without CUDA; InvalidArgument for an unknown
// backend, rank outside [0, world_size), a port outside [0, 65535] or port 0 on a rank
// that does not host the store; Unavailable when the store cannot be reached.
absl::StatusOr<std::unique_ptr<Collective>> CreateCollective(
    const CollectiveOptions& options);

// Makes the groups a caller joins (the learner's broadcast epochs): the seam where tests
// plug a fake collective in (learner/service/testing/fake_collective.h).
//
// Thread-safety: implementations are thread-safe.
class CollectiveFactory {
 public:
  virtual ~CollectiveFactory() = default;
  // As CreateCollective: blocks until the group formed or failed.
  virtual absl::StatusOr<std::unique_ptr<Collective>> Create(
      const CollectiveOptions& options) = 0;
};

// The real factory: CreateCollective (c10d). Never null; lives forever.
CollectiveFactory* C10dCollectiveFactory();

// A fresh store prefix for one group: "duet-" and 128 random bits in hex. The learner
// hands it to its workers only over the authenticated gRPC channel, so that an outsider
// who reaches the store cannot guess the keys the group reads.
std::string NewStorePrefix();

// A TCPStore server hosted by this process, for callers that want the store to outlive
// the groups that use it, or one store for several groups (distinct `group_prefix`es).
// Clients connect with CollectiveOptions{store_host=<this machine>, store_port=port()}.
// The server listens on every interface.
//
// Thread-safety: port() may be called from any thread. Destroying the server while
// groups are still forming makes their rendezvous fail.
class StoreServer {
 public:
  // Listens on `port`; 0 picks a free port. Unavailable if the port cannot be bound.
  // `timeout` bounds the server's own store operations (rounded up to whole seconds).
  static absl::StatusOr<std::unique_ptr<StoreServer>> Start(int port,
                                                            absl::Duration timeout);

  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  // The port the server listens on (the real one when started with 0).
  int port() const;

 private:
  struct Impl;
  explicit StoreServer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace duet

#endif  // DUET_COMMON_WEIGHTS_COLLECTIVE_H_
