#include "learner/service/weight_sync_manager.h"

#include <glog/logging.h>

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/weights/weight_sync.h"

namespace duet {

WeightSyncManager::WeightSyncManager(WeightSyncOptions options, WorkQueue* queue,
                                     WeightSnapshot* snapshot,
                                     std::shared_ptr<RendezvousStore> rendezvous,
                                     CollectiveFactory* collectives,
                                     LearnerTelemetry* telemetry, Clock* clock)
    : options_(std::move(options)),
      queue_(queue),
      snapshot_(snapshot),
      rendezvous_(std::move(rendezvous)),
      collectives_(collectives),
      telemetry_(telemetry),
      clock_(clock) {}

WeightSyncManager::~WeightSyncManager() = default;

void WeightSyncManager::Publish(int64_t version,
                                const std::vector<torch::Tensor>& params) {
  SerializedWeights w = SerializeParameters(params);
  snapshot_->Set(version, w.checksum, std::move(w.bytes));
}

void WeightSyncManager::Reset() { collective_.reset(); }

int64_t WeightSyncManager::absent_until(const std::string& worker_id) const {
  auto a = absent_.find(worker_id);
  return a == absent_.end() ? 0 : a->second.until_sync;
}

void WeightSyncManager::FormEpoch(const std::vector<WorkerRecord>& workers) {
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

void WeightSyncManager::NoteAbsentMembers() {
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

absl::Status WeightSyncManager::Sync(int64_t version,
                                     const std::vector<torch::Tensor>& params) {
  Publish(version, params);
  const uint64_t sum = snapshot_->checksum();
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
      c.backend = options_.backend;
      c.rendezvous = rendezvous_;
      // Leases keep running while the learner waits in the rendezvous: a member lost
      // meanwhile (silent past its lease, or gone) ends this epoch at once instead of at
      // the collective timeout, and so does a run shutting down (the queue closed).
      std::set<std::string> member_ids;
      for (const auto& [id, rank] : epoch_ranks_) member_ids.insert(id);
      c.abandon = [this, member_ids] {
        if (queue_->closed()) return true;
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
      const absl::Time t0 = clock_->Now();
      absl::StatusOr<std::unique_ptr<Collective>> formed = collectives_->Create(c);
      if (formed.ok()) {
        collective_ = *std::move(formed);
        telemetry_->RecordCollective(c.world_size);
        LOG(INFO) << "broadcast epoch " << epoch_ << " formed: " << c.world_size
                  << " ranks (" << c.backend << ") in "
                  << absl::ToDoubleSeconds(clock_->Now() - t0) << " s";
      } else {
        c10d = formed.status();
        // Only a rendezvous that ran out of time says who never came; one abandoned for a
        // lost member may have ended before the others had time to join.
        rendezvous_timed_out = absl::IsDeadlineExceeded(c10d);
      }
    }
    if (c10d.ok() && collective_) {
      WeightBroadcaster broadcaster(
          collective_.get(), options_.bucket_bytes,
          WeightMacKey::Derive(options_.auth_token, epoch_prefix_), options_.topology);
      c10d = broadcaster.Broadcast(params, version);
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
  const absl::Duration grace = options_.grace;
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

absl::Status WeightSyncManager::SyncMetered(int64_t version,
                                            const std::vector<torch::Tensor>& params) {
  const absl::Time t0 = clock_->Now();
  const absl::Status s = Sync(version, params);
  int64_t bytes = 0;
  for (const torch::Tensor& p : params) bytes += p.numel() * p.element_size();
  telemetry_->RecordSync(version, bytes, absl::ToDoubleSeconds(clock_->Now() - t0), s);
  telemetry_->RecordWorkerVersions(snapshot_->version(), queue_->Workers());
  return s;
}

}  // namespace duet
