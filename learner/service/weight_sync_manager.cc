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
  snapshot_->Set(version, SerializeParameters(params, options_.wire_dtype));
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
    NoteMissing(id, /*silent=*/false);
    LOG(WARNING) << "worker " << id << " (rank " << rank
                 << ") never joined broadcast epoch " << epoch_
                 << ": it gets weights over gRPC until sync " << absent_.at(id).until_sync
                 << " (" << absent_.at(id).misses << " misses)";
  }
}

absl::Duration FallbackDeadline(absl::Duration grace, int64_t bytes, int64_t workers,
                                double bytes_per_second) {
  if (bytes_per_second <= 0) return grace;
  return grace + absl::Seconds(static_cast<double>(bytes) * static_cast<double>(workers) /
                               bytes_per_second);
}

absl::Status WeightSyncManager::RunEpoch(int64_t version,
                                         const std::vector<torch::Tensor>& params,
                                         bool new_epoch) {
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
        WeightMacKey::Derive(options_.auth_token, epoch_prefix_), options_.topology,
        options_.wire_dtype);
    c10d = broadcaster.Broadcast(params, version);
  }
  if (!c10d.ok()) {
    // A member died, stalled or left: this epoch is over. The workers' own c10d calls
    // fail too (their sync results say so).
    LOG(WARNING) << "broadcast epoch " << epoch_ << " failed: " << c10d;
    if (rendezvous_timed_out) NoteAbsentMembers();
    collective_.reset();
    epoch_membership_ = -1;
  }
  return c10d;
}

void WeightSyncManager::NoteMissing(const std::string& id, bool silent) {
  Absent& a = absent_[id];
  ++a.misses;
  a.until_sync = syncs_ + 1 + (int64_t{1} << std::min(a.misses, 6));
  if (silent) a.silent_since = clock_->Now();
}

bool WeightSyncManager::SilentSinceBlamed(const WorkerRecord& w) const {
  auto a = absent_.find(w.id);
  return a != absent_.end() && a->second.until_sync > syncs_ &&
         w.last_seen <= a->second.silent_since;
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
  // Nor do they go to a worker blamed for not answering a failed epoch that has not
  // called in since (see the file comment).
  ++syncs_;
  std::vector<WorkerRecord> workers;
  for (const WorkerRecord& w : queue_->Workers()) {
    if (w.pulled && !SilentSinceBlamed(w)) workers.push_back(w);
  }
  std::vector<WorkerRecord> members;
  for (const WorkerRecord& w : workers) {
    if (absent_until(w.id) <= syncs_) members.push_back(w);
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
  const absl::Time started = clock_->Now();
  const absl::Status c10d =
      broadcast ? RunEpoch(version, params, new_epoch) : absl::OkStatus();
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
  std::vector<WorkerRecord> retry;
  if (broadcast && options_.reform_window > absl::ZeroDuration()) {
    // The members that answer within moments say whether the epoch failed. If it did,
    // the group re-forms at once with the members whose c10d call failed (they are alive:
    // they said so), and broadcasts this version again; a member that has not answered
    // by then is the likely culprit (dead or stalled) and is left out of the next epochs
    // as an absent one, and the sync goes on without it.
    // The window waits only for the members not already known absent (a rendezvous that
    // timed out named them); the other answers count if they are in.
    auto expected = [&](const WorkerRecord& w) {
      return epoch_ranks_.count(w.id) > 0 && absent_until(w.id) <= syncs_;
    };
    std::vector<std::string> expected_ids, other_ids;
    for (size_t i = 0; i < workers.size(); ++i)
      (expected(workers[i]) ? expected_ids : other_ids).push_back(ids[i]);
    DUET_ASSIGN_OR_RETURN(auto early_expected,
                          queue_->TakeWithin(expected_ids, options_.reform_window));
    DUET_ASSIGN_OR_RETURN(auto early_other,
                          queue_->TakeWithin(other_ids, absl::ZeroDuration()));
    std::vector<std::optional<v1::CompleteWorkRequest>> early;
    bool failed = !c10d.ok();
    bool answered = false;
    for (size_t i = 0, e = 0, o = 0; i < workers.size(); ++i) {
      const bool member = expected(workers[i]);
      early.push_back(std::move(member ? early_expected[e++] : early_other[o++]));
      const std::optional<v1::CompleteWorkRequest>& r = early.back();
      // Only a member's failed c10d call says that the epoch failed.
      failed = failed || (member && r.has_value() && r->has_error());
      answered = answered || (member && r.has_value());
    }
    if (failed) {
      std::vector<WorkerRecord> rejoin, waiting, blamed;
      std::vector<std::string> waiting_ids, blamed_ids;
      for (size_t i = 0; i < workers.size(); ++i) {
        const WorkerRecord& w = workers[i];
        const std::optional<v1::CompleteWorkRequest>& r = early[i];
        if (!r.has_value()) {
          if (answered && expected(w)) {
            // Blamed: the sync does not wait for it. If it is alive it still holds an
            // older version, and catches up over gRPC when an item asks for a newer one
            // (common/worker/worker_runtime.h); if it is dead, its lease removes it.
            NoteMissing(w.id, /*silent=*/true);
            LOG(WARNING) << "worker " << w.id << " did not answer broadcast epoch "
                         << epoch_
                         << " in time: the sync goes on without it, and it gets "
                         << "weights over gRPC until sync " << absent_until(w.id);
            blamed.push_back(w);
            blamed_ids.push_back(ids[i]);
            continue;
          }
          waiting.push_back(w);
          waiting_ids.push_back(ids[i]);
        } else if (r->has_error() && expected(w) && still_live(w.id) &&
                   r->error().code() !=
                       static_cast<int>(absl::StatusCode::kInvalidArgument)) {
          rejoin.push_back(w);
        } else {
          settle(w, r, /*may_retry=*/true, &retry);
        }
      }
      // Their items are dropped (a late answer is refused); one that came in meanwhile
      // counts.
      DUET_ASSIGN_OR_RETURN(auto late,
                            queue_->AwaitWithin(blamed_ids, absl::ZeroDuration()));
      for (size_t i = 0; i < late.size(); ++i) {
        if (late[i].has_value()) settle(blamed[i], late[i], /*may_retry=*/true, &retry);
      }
      if (!rejoin.empty()) {
        FormEpoch(rejoin);
        for (const WorkerRecord& w : rejoin) {
          waiting.push_back(w);
          waiting_ids.push_back(submit(w, /*over_grpc=*/false));
        }
        if (RunEpoch(version, params, /*new_epoch=*/true).ok()) {
          LOG(INFO) << "broadcast epoch " << epoch_ << " re-formed with " << rejoin.size()
                    << " of " << workers.size() << " workers and sent v" << version << " "
                    << absl::ToDoubleSeconds(clock_->Now() - started)
                    << " s after the sync began";
        }
      }
      workers = std::move(waiting);
      ids = std::move(waiting_ids);
    } else {
      // Nothing failed: the early answers count as they are.
      std::vector<WorkerRecord> waiting;
      std::vector<std::string> waiting_ids;
      for (size_t i = 0; i < workers.size(); ++i) {
        if (early[i].has_value()) {
          settle(workers[i], early[i], /*may_retry=*/true, &retry);
        } else {
          waiting.push_back(workers[i]);
          waiting_ids.push_back(ids[i]);
        }
      }
      workers = std::move(waiting);
      ids = std::move(waiting_ids);
    }
  }
  DUET_ASSIGN_OR_RETURN(
      auto results,
      queue_->AwaitWithin(ids, options_.collective_timeout + options_.grace));
  for (size_t i = 0; i < results.size(); ++i)
    settle(workers[i], results[i], /*may_retry=*/broadcast, &retry);
  if (retry.empty()) return absl::OkStatus();
  collective_.reset();
  epoch_membership_ = -1;  // the next sync re-forms the group
  std::vector<std::string> again;
  for (const WorkerRecord& w : retry) again.push_back(submit(w, /*over_grpc=*/true));
  // The stream is the learner's own link: every retrying worker pulls the whole version
  // through it.
  const absl::Duration deadline = FallbackDeadline(
      options_.grace, TotalNumel(params) * WireElementSize(options_.wire_dtype),
      static_cast<int64_t>(retry.size()), options_.fallback_bytes_per_second);
  DUET_ASSIGN_OR_RETURN(auto second, queue_->AwaitWithin(again, deadline));
  for (size_t i = 0; i < second.size(); ++i)
    settle(retry[i], second[i], /*may_retry=*/false, nullptr);
  return absl::OkStatus();
}

absl::Status WeightSyncManager::SyncMetered(int64_t version,
                                            const std::vector<torch::Tensor>& params) {
  const absl::Time t0 = clock_->Now();
  const absl::Status s = Sync(version, params);
  const int64_t bytes = TotalNumel(params) * WireElementSize(options_.wire_dtype);
  telemetry_->RecordSync(version, bytes, absl::ToDoubleSeconds(clock_->Now() - t0), s);
  telemetry_->RecordWorkerVersions(snapshot_->version(), queue_->Workers());
  return s;
}

}  // namespace duet
