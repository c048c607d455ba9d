#ifndef DUET_LEARNER_SERVICE_WEIGHT_SYNC_MANAGER_H_
#define DUET_LEARNER_SERVICE_WEIGHT_SYNC_MANAGER_H_

// The learner's weight sync: publishes each new version and brings every live worker to
// it, over the c10d broadcast of the current epoch where it can and over the gRPC weight
// stream (FetchWeights) where it cannot.
//
// Broadcast epochs: an epoch is a c10d group of the learner (rank 0) and the members
// (ranks 1..N in the order of WorkQueue::Workers()), with a fresh random store prefix
// told to workers only over gRPC. A sync forms a new epoch whenever the members changed
// (WorkQueue::membership_version, or the member set); otherwise it reuses the group.
// When an epoch's rendezvous or broadcast fails (the learner's c10d call fails, or a
// member reports that its own did), the group is dropped and re-formed at once, within
// the same sync, with the members that reported a failed c10d call within
// `reform_window` (they are alive), and the version is broadcast again. A member that
// has not answered by then is the likely culprit: it is left out of the next epochs as an
// absent member (below), and the sync does not wait for it (alive, it catches up over
// gRPC when an item asks for the newer version; dead, its lease removes it). Only the
// workers that fail in the re-formed epoch too, or that were not members, get the weights
// over the gRPC stream, within a deadline sized by the bytes and the number of such
// workers (FallbackDeadline). The next sync forms a new epoch if the re-formed one failed
// too.
//
// Absent members: when a rendezvous runs out of time, the members whose rank key never
// reached the rendezvous store are absent, and so are the members that had not answered
// a failed epoch within `reform_window`; the latter are sent no sync at all until they
// call in again (a dead worker would hold every sync until its lease ran out; a live
// one catches up over gRPC when an item asks for a newer version). A member with `m`
// misses in a row is left out of the next 2^min(m, 6) syncs (it gets them over gRPC); a
// member that never joins costs a failed epoch at syncs 1, 4, 9, 18, 35, 68, then every
// 65th. A member that joins forgets its misses.
//
// Settling: a worker that did not take or confirm its sync in time, or that confirms
// something other than what was published (another version or checksum, or an error
// over gRPC), is evicted from the run (it registers again and fetches the weights then).
// Results of workers lost meanwhile do not count. One worker never fails a sync.
//
// Time: every wait is on the injected Clock (the work queue's and the collective's
// timeouts are measured on it too when the queue shares it).
//
// Thread-safety: thread-compatible; one thread (the learner's training thread) calls
// Publish and Sync. The queue may be closed from another thread while a Sync waits: the
// Sync returns Cancelled promptly (an epoch still forming gives up too).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/weights/collective.h"
#include "common/weights/rendezvous_store.h"
#include "common/weights/weight_stream.h"
#include "common/weights/weight_sync.h"
#include "learner/service/learner_telemetry.h"
#include "learner/service/work_queue.h"

namespace duet {

struct WeightSyncOptions {
  // The recipe's `collective`: "gloo", "nccl", or "none" (the gRPC stream only; then no
  // rendezvous store is given).
  std::string backend = "gloo";
  // The learner's data-plane address (its Gloo transport binds there only).
  std::string store_host = "127.0.0.1";
  // Bound on one rendezvous or broadcast (LearnerOptions::collective_timeout).
  absl::Duration collective_timeout = absl::Seconds(60);
  // How long past the collective timeout a worker has to take and confirm its sync, and
  // how long a gRPC retry has (the recipe's faults.sync_grace_seconds).
  absl::Duration grace = absl::Seconds(120);
  // The broadcast's bucket (the recipe's bucket_mb << 20).
  int64_t bucket_bytes = int64_t{32} << 20;
  // The recipe's `broadcast`.
  BroadcastTopology topology = BroadcastTopology::kCollective;
  // The recipe's `wire_dtype`: what the broadcast and the gRPC stream carry.
  WireDtype wire_dtype = WireDtype::kFloat32;
  // The run's token: the broadcast's keyed checksum derives from it ("" : none).
  std::string auth_token;
  // How long after its broadcast a failed epoch waits for the members' answers before it
  // re-forms with those that answered (the others are blamed). A member's failed c10d
  // call ends when the learner's does, or when a peer's connection drops, so its answer
  // follows within one RPC. Zero: no re-form (every member that did not confirm fetches
  // over the gRPC stream, and the sync waits for every member's answer).
  absl::Duration reform_window = absl::Seconds(5);
  // The learner's assumed egress for the gRPC fallback (1 Gbit/s, the slowest link
  // docs/scaling.md assumes): the fallback's deadline is `grace` plus the bytes of one
  // version times the retrying workers over this rate.
  double fallback_bytes_per_second = 125e6;
};

// `grace` + bytes x workers / bytes_per_second (just `grace` when the rate is not
// positive): how long the gRPC fallback of `workers` workers may take.
absl::Duration FallbackDeadline(absl::Duration grace, int64_t bytes, int64_t workers,
                                double bytes_per_second);

class WeightSyncManager {
 public:
  // `queue`, `snapshot`, `collectives`, `telemetry` and `clock` are not owned and must
  // outlive this object. `rendezvous` null: no broadcast (every sync goes over gRPC).
  WeightSyncManager(WeightSyncOptions options, WorkQueue* queue, WeightSnapshot* snapshot,
                    std::shared_ptr<RendezvousStore> rendezvous,
                    CollectiveFactory* collectives, LearnerTelemetry* telemetry,
                    Clock* clock);
  ~WeightSyncManager();

  WeightSyncManager(const WeightSyncManager&) = delete;
  WeightSyncManager& operator=(const WeightSyncManager&) = delete;

  // Serializes `params` (in the wire dtype) into the snapshot FetchWeights serves, at
  // `version`. Changes nothing else.
  void Publish(int64_t version, const std::vector<torch::Tensor>& params);

  // Publishes `params` at `version` and waits until every live worker that has pulled
  // work confirms it (see the file comment). Errors only from the queue (Cancelled once
  // it is closed); a worker's failure is settled by evicting it.
  // REQUIRES: nobody writes `params` until Sync returns.
  absl::Status Sync(int64_t version, const std::vector<torch::Tensor>& params);
  // Sync, timed on the clock and recorded in the telemetry (the sync's duration and
  // bytes, the workers' confirmed versions).
  absl::Status SyncMetered(int64_t version, const std::vector<torch::Tensor>& params);

  // Drops the current group (at shutdown).
  void Reset();

  // For tests and logs: the current epoch's number (0: none formed yet), whether its
  // group is up, its members' ranks, how many syncs ran, and the sync before which an
  // absent member is left out (0 for a member that is not absent).
  int64_t epoch() const { return epoch_; }
  bool group_formed() const { return collective_ != nullptr; }
  const std::map<std::string, int32_t>& epoch_ranks() const { return epoch_ranks_; }
  int64_t syncs() const { return syncs_; }
  int64_t absent_until(const std::string& worker_id) const;

 private:
  // Starts a new broadcast epoch over `workers`: ranks 1..N, a fresh store prefix.
  void FormEpoch(const std::vector<WorkerRecord>& workers);
  // After the current epoch's rendezvous timed out: the members whose rank key never
  // reached the rendezvous store are absent (see absent_); the others' misses are
  // forgotten.
  void NoteAbsentMembers();
  // One more miss for `id`: it is left out of the next 2^min(misses, 6) syncs' epochs.
  // `silent`: it did not answer a failed epoch (see Absent::silent_since).
  void NoteMissing(const std::string& id, bool silent);
  // Whether `w` was blamed for silence and has not called in since (no sync goes to it).
  bool SilentSinceBlamed(const WorkerRecord& w) const;
  // Forms the current epoch's group when `new_epoch` (FormEpoch chose its members) and
  // broadcasts `params` at `version` over it. On failure the group is dropped (and, after
  // a rendezvous timeout, the members that never came are noted absent).
  absl::Status RunEpoch(int64_t version, const std::vector<torch::Tensor>& params,
                        bool new_epoch);

  const WeightSyncOptions options_;
  WorkQueue* const queue_;
  WeightSnapshot* const snapshot_;
  const std::shared_ptr<RendezvousStore> rendezvous_;  // null: no broadcast
  CollectiveFactory* const collectives_;
  LearnerTelemetry* const telemetry_;
  Clock* const clock_;
  std::unique_ptr<Collective> collective_;  // the current epoch's group (null: none)
  // The broadcast epoch: its number, members (by WorkQueue::membership_version) and its
  // random c10d key prefix, told to workers only over gRPC.
  int64_t epoch_ = 0;
  int64_t epoch_membership_ = -1;
  std::string epoch_prefix_;
  std::map<std::string, int32_t> epoch_ranks_;
  // Members that did not join a failed epoch's rendezvous (see the file comment).
  struct Absent {
    int misses = 0;
    int64_t until_sync = 0;  // left out of the epochs of syncs before this one
    // When it was blamed for not answering a failed epoch (InfinitePast: never, or it was
    // blamed for a rendezvous). Until it calls in again it is sent no sync at all.
    absl::Time silent_since = absl::InfinitePast();
  };
  std::map<std::string, Absent> absent_;
  int64_t syncs_ = 0;  // Sync calls so far
};

}  // namespace duet

#endif  // DUET_LEARNER_SERVICE_WEIGHT_SYNC_MANAGER_H_
