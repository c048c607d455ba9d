#include "learner/service/remote_backends.h"

#include <glog/logging.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status_macros.h"
#include "common/rpc/proto_convert.h"

namespace duet {
namespace {

// [begin, end) ranges splitting n rows into at most `parts` chunks of >= min_rows.
std::vector<std::pair<size_t, size_t>> Split(size_t n, int parts, int64_t min_rows) {
  const size_t max_parts = std::max<size_t>(1, n / std::max<int64_t>(1, min_rows));
  const size_t p = std::max<size_t>(1, std::min<size_t>(parts, max_parts));
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < p; ++i) {
    const size_t b = n * i / p, e = n * (i + 1) / p;
    if (e > b) out.emplace_back(b, e);
  }
  return out;
}

absl::Status ErrorFrom(const v1::CompleteWorkRequest& r) {
  return absl::Status(static_cast<absl::StatusCode>(r.error().code()),
                      absl::StrCat("worker ", r.worker_id(), ": ", r.error().message()));
}

}  // namespace

bool IsTransientWorkerError(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kResourceExhausted;
}

absl::Duration ItemDeadline(const DispatchOptions& options, int64_t rows) {
  return options.item_deadline_base + options.item_deadline_per_row * rows;
}

namespace {

int64_t ItemRows(const v1::WorkItem& item) {
  if (item.has_rollout())
    return static_cast<int64_t>(item.rollout().inputs_size()) * item.rollout().k();
  if (item.has_score()) return item.score().queries_size();
  return 0;
}

}  // namespace

absl::StatusOr<std::vector<v1::CompleteWorkRequest>> DispatchItems(
    WorkQueue* queue, v1::Role role, std::vector<v1::WorkItem> items,
    const DispatchOptions& options) {
  struct Failures {
    std::set<std::string> workers;    // that failed the item
    std::vector<std::string> errors;  // each try's, for the step's error
    int tries = 0;
  };
  std::vector<v1::CompleteWorkRequest> out(items.size());
  std::vector<Failures> failed(items.size());
  std::vector<size_t> open(items.size());
  for (size_t i = 0; i < items.size(); ++i) open[i] = i;
  while (!open.empty()) {
    std::vector<std::string> ids;
    for (size_t i : open) {
      SubmitOptions submit;
      submit.deadline = ItemDeadline(options, ItemRows(items[i]));
      submit.avoid = failed[i].workers;
      ids.push_back(queue->Submit(role, items[i], std::move(submit)));
    }
    DUET_ASSIGN_OR_RETURN(auto results, queue->Await(ids, options.item_timeout));
    std::vector<size_t> again;
    for (size_t k = 0; k < open.size(); ++k) {
      v1::CompleteWorkRequest& r = results[k];
      const size_t i = open[k];
      if (!r.has_error()) {
        out[i] = std::move(r);
        continue;
      }
      Failures& f = failed[i];
      const absl::Status error = ErrorFrom(r);
      ++f.tries;
      f.workers.insert(r.worker_id());
      f.errors.push_back(error.ToString());
      const bool poisoned =
          static_cast<int>(f.workers.size()) >= options.poison_workers ||
          (f.tries > options.max_retries && queue->AllWorkersIn(role, f.workers));
      if (poisoned) {
        return absl::Status(
            error.code(), absl::StrCat("work item ", i, " of ", items.size(), " failed ",
                                       f.tries, " times on ", f.workers.size(),
                                       " worker(s) (", absl::StrJoin(f.workers, ", "),
                                       "): ", absl::StrJoin(f.errors, "; ")));
      }
      LOG(WARNING) << "re-issuing item " << ids[k] << " (failed " << f.tries
                   << " times, on " << absl::StrJoin(f.workers, ", ") << ") after "
                   << (IsTransientWorkerError(error.code()) ? "a transient" : "an")
                   << " error: " << error;
      again.push_back(i);
    }
    // Every worker of the role has failed one of these items: before re-issuing, wait for
    // another worker to register (at most pool_wait; one that comes gets the items
    // first).
    bool pool_failed = false;
    for (size_t i : again)
      pool_failed = pool_failed || queue->AllWorkersIn(role, failed[i].workers);
    if (pool_failed && options.pool_wait > absl::ZeroDuration()) {
      (void)queue->AwaitWorkers(role, queue->CountWorkers(role) + 1, options.pool_wait);
    }
    open = std::move(again);
  }
  return out;
}

absl::StatusOr<std::vector<Group>> RemoteRollout::Sample(const RolloutRequest& request) {
  DUET_RETURN_IF_ERROR(queue_->AwaitWorkers(v1::ROLE_ROLLOUT, 1, options_.worker_wait));
  const int workers = queue_->CountWorkers(v1::ROLE_ROLLOUT);
  auto ranges = Split(
      request.inputs.size(), workers,
      std::max<int64_t>(1, options_.min_rows_per_item / std::max<int64_t>(1, request.k)));
  std::vector<v1::WorkItem> items;
  std::vector<RolloutRequest> parts;
  for (auto [b, e] : ranges) {
    RolloutRequest part = request;
    part.inputs.assign(request.inputs.begin() + b, request.inputs.begin() + e);
    part.input_offset = request.input_offset + static_cast<int64_t>(b);
    v1::WorkItem item;
    item.set_policy_version(std::min(request.policy_version, served_version_()));
    ToProto(part, item.mutable_rollout());
    items.push_back(std::move(item));
    parts.push_back(std::move(part));
  }
  DUET_ASSIGN_OR_RETURN(
      auto results, DispatchItems(queue_, v1::ROLE_ROLLOUT, std::move(items), options_));
  std::vector<Group> out;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].has_rollout()) {
      return absl::InternalError(
          absl::StrCat("part ", i, " came back without a rollout result"));
    }
    DUET_ASSIGN_OR_RETURN(
        std::vector<Group> groups,
        FromProto(results[i].rollout(), parts[i], results[i].policy_version()));
    for (auto& g : groups) {
      g.item_id = results[i].item_id();
      out.push_back(std::move(g));
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> RemoteScorer::Score(
    const std::vector<RewardQuery>& queries, int64_t policy_version) {
  DUET_RETURN_IF_ERROR(queue_->AwaitWorkers(v1::ROLE_SCORER, 1, options_.worker_wait));
  const int workers = queue_->CountWorkers(v1::ROLE_SCORER);
  auto ranges = Split(queries.size(), workers, options_.min_rows_per_item);
  std::vector<v1::WorkItem> items;
  std::vector<size_t> sizes;
  for (auto [b, e] : ranges) {
    v1::WorkItem item;
    item.set_policy_version(std::min(policy_version, served_version_()));
    ToProto(std::vector<RewardQuery>(queries.begin() + b, queries.begin() + e),
            item.mutable_score());
    items.push_back(std::move(item));
    sizes.push_back(e - b);
  }
  DUET_ASSIGN_OR_RETURN(
      auto results, DispatchItems(queue_, v1::ROLE_SCORER, std::move(items), options_));
  std::vector<double> out;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].has_score() ||
        results[i].score().rewards_size() != static_cast<int>(sizes[i])) {
      return absl::InternalError(
          absl::StrCat("part ", i, " came back with the wrong number of rewards"));
    }
    out.insert(out.end(), results[i].score().rewards().begin(),
               results[i].score().rewards().end());
  }
  return out;
}

}  // namespace duet
