#include "learner/service/coordinator_service.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/model/generation.h"
#include "common/rpc/rpc_util.h"
#include "common/work/task.h"
#include "learner/policy_update.h"

namespace duet {

CoordinatorService::CoordinatorService(WorkQueue* queue, WeightSnapshot* weights,
                                       RendezvousInfo rendezvous, std::string auth_token,
                                       RequestLimits limits,
                                       std::function<void(v1::RunStatus*)> status_fn)
    : queue_(queue),
      weights_(weights),
      rendezvous_(std::move(rendezvous)),
      auth_token_(std::move(auth_token)),
      limits_(limits),
      status_fn_(std::move(status_fn)) {}

grpc::Status CoordinatorService::Register(grpc::ServerContext* ctx,
                                          const v1::RegisterRequest* req,
                                          v1::RegisterResponse* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (req->role() != v1::ROLE_ROLLOUT && req->role() != v1::ROLE_SCORER) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("role: must be ROLE_ROLLOUT or ROLE_SCORER"));
  }
  if (req->capacity() < 1 || req->capacity() > limits_.max_rows) {
    return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "capacity: must be in [1, ", limits_.max_rows, "], got ", req->capacity())));
  }
  if (req->name().size() > 256)
    return ToGrpcStatus(absl::InvalidArgumentError("name: longer than 256 bytes"));
  absl::StatusOr<WorkerRecord> registered =
      queue_->Register(req->role(), req->name(), req->capacity());
  // A full registry frees a seat only when a worker leaves: retry slowly.
  if (!registered.ok())
    return ToGrpcStatusWithRetryHint(registered.status(), ctx, absl::Seconds(5));
  const WorkerRecord& w = *registered;
  resp->set_worker_id(w.id);
  resp->set_rank(w.rank);
  resp->set_world_size(rendezvous_.world_size);
  resp->set_store_host(rendezvous_.store_host);
  resp->set_store_port(rendezvous_.store_port);
  resp->set_collective_backend(rendezvous_.backend);
  resp->set_policy_version(weights_->version());
  resp->set_weights_checksum(weights_->checksum());
  resp->set_frozen_scorer(rendezvous_.frozen_scorer);
  resp->set_run_id(rendezvous_.run_id);
  resp->set_store_prefix(rendezvous_.store_prefix);
  resp->set_lease_ms(absl::ToInt64Milliseconds(queue_->lease()));
  resp->set_session(w.session);
  ToProto(rendezvous_.rewards, resp->mutable_rewards());
  resp->set_rendezvous_over_grpc(rendezvous_.rendezvous_over_grpc);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* CoordinatorService::PullWork(grpc::CallbackServerContext* ctx,
                                                       const v1::PullWorkRequest* req,
                                                       v1::PullWorkResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status checked = CheckToken(*ctx, auth_token_);
  if (checked.ok() && (req->wait_ms() < 0 || req->wait_ms() > 10000)) {
    checked = absl::InvalidArgumentError("wait_ms: must be in [0, 10000]");
  }
  if (checked.ok()) checked = queue_->Authenticate(req->worker_id(), req->session());
  if (!checked.ok()) {
    reactor->Finish(ToGrpcStatus(checked));
    return reactor;
  }
  // A seat among the waiting polls, or none: past the bound the call takes what is there
  // and does not wait.
  absl::Duration wait = absl::Milliseconds(req->wait_ms());
  const bool bounded = limits_.max_waiting_polls > 0 && wait > absl::ZeroDuration();
  const bool seated = bounded && waiting_polls_.fetch_add(1) < limits_.max_waiting_polls;
  if (bounded && !seated) {
    waiting_polls_.fetch_sub(1);
    wait = absl::ZeroDuration();
  }
  queue_->PullAsync(req->worker_id(), wait,
                    [this, ctx, reactor, resp, seated, refused = bounded && !seated](
                        absl::StatusOr<std::optional<v1::WorkItem>> item) {
                      if (seated) waiting_polls_.fetch_sub(1);
                      reactor->Finish(PullAnswer(ctx, refused, std::move(item), resp));
                    });
  return reactor;
}

grpc::Status CoordinatorService::PullAnswer(
    grpc::CallbackServerContext* ctx, bool refused_seat,
    absl::StatusOr<std::optional<v1::WorkItem>> item, v1::PullWorkResponse* resp) const {
  if (refused_seat && item.ok() && !item->has_value()) {
    return ToGrpcStatusWithRetryHint(
        absl::ResourceExhaustedError(
            absl::StrCat(limits_.max_waiting_polls,
                         " workers are waiting for work already; retry later")),
        ctx, absl::Milliseconds(500));
  }
  if (absl::IsCancelled(item.status())) {
    resp->set_shutdown(true);
    return grpc::Status::OK;
  }
  if (!item.ok())
    return ToGrpcStatusWithRetryHint(item.status(), ctx, absl::Milliseconds(200));
  if (item->has_value()) *resp->mutable_item() = std::move(**item);
  return grpc::Status::OK;
}

absl::Status CoordinatorService::ValidateResult(
    const v1::CompleteWorkRequest& req) const {
  auto check_ids = [this](const v1::TokenSeq& seq,
                          const std::string& field) -> absl::Status {
    if (seq.ids_size() > limits_.max_sequence_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": ", seq.ids_size(), " tokens, at most ", limits_.max_sequence_tokens));
    }
    for (int64_t id : seq.ids()) {
      if (id < 0 || id >= limits_.layout.vocab_size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ": token id ", id, " outside [0, ", limits_.layout.vocab_size(), ")"));
      }
    }
    return absl::OkStatus();
  };
  if (req.item_id().empty()) return absl::InvalidArgumentError("item_id: empty");
  switch (req.result_case()) {
    case v1::CompleteWorkRequest::kRollout:
      for (int g = 0; g < req.rollout().groups_size(); ++g) {
        const auto& group = req.rollout().groups(g);
        for (int s = 0; s < group.samples_size(); ++s) {
          const auto& sample = group.samples(s);
          const std::string field =
              absl::StrCat("rollout.groups[", g, "].samples[", s, "]");
          if (auto st = check_ids(sample.output(), field + ".output"); !st.ok())
            return st;
          if (sample.policy_logprobs_size() != sample.output().ids_size()) {
            return absl::InvalidArgumentError(
                field + ".policy_logprobs: one per output token required");
          }
          for (float lp : sample.policy_logprobs()) {
            if (!std::isfinite(lp) || lp > 0) {
              return absl::InvalidArgumentError(
                  field + ".policy_logprobs: must be finite and <= 0");
            }
          }
        }
      }
      return absl::OkStatus();
    case v1::CompleteWorkRequest::kScore:
      for (int i = 0; i < req.score().rewards_size(); ++i) {
        if (!std::isfinite(req.score().rewards(i))) {
          return absl::InvalidArgumentError(
              absl::StrCat("score.rewards[", i, "]: not finite"));
        }
      }
      return absl::OkStatus();
    case v1::CompleteWorkRequest::kSync:
      return absl::OkStatus();
    case v1::CompleteWorkRequest::kError:
      if (req.error().message().size() > 4096)
        return absl::InvalidArgumentError("error.message: over 4096 bytes");
      // A worker reports why it could not do an item with a real status code: OK is not
      // an error, and an unknown number would reach the step's error as UNKNOWN.
      if (req.error().code() < 1 || req.error().code() > 16) {
        return absl::InvalidArgumentError(
            absl::StrCat("error.code: ", req.error().code(),
                         " is not an absl/gRPC status code in [1, 16]"));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          "result: one of rollout, score, sync or error is required");
  }
}

absl::Status CoordinatorService::ValidateResultForItem(
    const v1::WorkItem& item, const v1::CompleteWorkRequest& req) const {
  if (req.has_error()) return absl::OkStatus();  // the worker could not do it: any item
  // The version that produced it: never newer than the weights the learner has sent out
  // (the RL loop refuses such a sample and would stop the run), and for rollout and
  // score items never older than the item asked for (a frozen scorer keeps the base
  // weights and reports version 0 on purpose).
  const int64_t published = weights_->version();
  const bool frozen_score = item.has_score() && rendezvous_.frozen_scorer;
  const int64_t oldest = item.has_sync() || frozen_score ? 0 : item.policy_version();
  if (req.policy_version() < oldest || req.policy_version() > published) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy_version: ", req.policy_version(), " outside [", oldest, ", ",
                     published, "] (the item asked for v", item.policy_version(),
                     ", the learner has published v", published, ")"));
  }
  const TokenLayout& layout = limits_.layout;
  if (item.has_rollout()) {
    if (!req.has_rollout())
      return absl::InvalidArgumentError("result: a rollout item needs a rollout result");
    const v1::RolloutWork& work = item.rollout();
    if (req.rollout().groups_size() != work.inputs_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("rollout.groups: ", req.rollout().groups_size(), " groups for ",
                       work.inputs_size(), " inputs"));
    }
    const Task task =
        work.task() == v1::TASK_UNDERSTANDING ? Task::kUnderstanding : Task::kGeneration;
    for (int g = 0; g < work.inputs_size(); ++g) {
      const auto& group = req.rollout().groups(g);
      if (group.samples_size() != work.k()) {
        return absl::InvalidArgumentError(
            absl::StrCat("rollout.groups[", g, "]: ", group.samples_size(),
                         " samples, the item asked for k = ", work.k()));
      }
      const std::vector<int64_t> input(work.inputs(g).ids().begin(),
                                       work.inputs(g).ids().end());
      for (int s = 0; s < group.samples_size(); ++s) {
        const std::string field =
            absl::StrCat("rollout.groups[", g, "].samples[", s, "].output");
        std::vector<int64_t> output(group.samples(s).output().ids().begin(),
                                    group.samples(s).output().ids().end());
        if (output.empty()) return absl::InvalidArgumentError(field + ": empty");
        if (task == Task::kGeneration) {
          const absl::Status shape = ValidateImageTokens(layout, output, 0);
          if (!shape.ok())
            return absl::InvalidArgumentError(absl::StrCat(field, ": ", shape.message()));
        } else {
          // Text ids, at most max_caption_tokens, then <eos> (a caption may be empty).
          std::vector<int64_t> words = output;
          if (words.back() == layout.eos) words.pop_back();
          if (static_cast<int64_t>(words.size()) > layout.max_caption_tokens) {
            return absl::InvalidArgumentError(absl::StrCat(field, ": ", words.size(),
                                                           " words, at most ",
                                                           layout.max_caption_tokens));
          }
          for (int64_t id : words) {
            if (!layout.IsText(id)) {
              return absl::InvalidArgumentError(
                  absl::StrCat(field, ": id ", id, " is not a text token"));
            }
          }
        }
        if (absl::Status row = CheckTrainableRow(layout, limits_.max_sequence_tokens,
                                                 task, input, output);
            !row.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(field, ": ", row.message()));
        }
      }
    }
    return absl::OkStatus();
  }
  if (item.has_score()) {
    if (!req.has_score())
      return absl::InvalidArgumentError("result: a score item needs a score result");
    if (req.score().rewards_size() != item.score().queries_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("score.rewards: ", req.score().rewards_size(), " for ",
                       item.score().queries_size(), " queries"));
    }
    return absl::OkStatus();
  }
  if (item.has_sync()) {
    if (!req.has_sync())
      return absl::InvalidArgumentError("result: a weight sync item needs a sync result");
    if (req.sync().version() != item.sync().version() ||
        req.sync().checksum() != item.sync().checksum()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sync: confirms v", req.sync().version(), " checksum ",
                       req.sync().checksum(), ", the learner sent v",
                       item.sync().version(), " checksum ", item.sync().checksum()));
    }
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat("item ", item.item_id(), " has no work"));
}

grpc::Status CoordinatorService::CompleteWork(grpc::ServerContext* ctx,
                                              const v1::CompleteWorkRequest* req,
                                              v1::CompleteWorkResponse* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (auto s = ValidateResult(*req); !s.ok()) return ToGrpcStatus(s);
  // An unknown worker (lost, quarantined: its items went to others) is NOT_FOUND; a
  // duplicate or late result of a known worker is acknowledged below.
  if (auto s = queue_->Authenticate(req->worker_id(), req->session()); !s.ok()) {
    if (absl::IsNotFound(s)) queue_->NoteLateResult(req->worker_id());
    return ToGrpcStatus(s);
  }
  const absl::Status done = queue_->Complete(
      *req, [this](const v1::WorkItem& item, const v1::CompleteWorkRequest& result) {
        return ValidateResultForItem(item, result);
      });
  // A duplicate or late result is acknowledged but not accepted (workers retry
  // CompleteWork after a lost reply); every other refusal keeps its code.
  if (absl::IsNotFound(done)) {
    resp->set_accepted(false);
    return grpc::Status::OK;
  }
  if (!done.ok()) return ToGrpcStatus(done);
  resp->set_accepted(true);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::FetchWeights(
    grpc::ServerContext* ctx, const v1::FetchWeightsRequest* req,
    grpc::ServerWriter<v1::WeightChunk>* writer) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  return ToGrpcStatus(StreamWeightSnapshot(
      *weights_, req->chunk_bytes(), [ctx] { return ctx->IsCancelled(); },
      [writer](const v1::WeightChunk& c) { return writer->Write(c); }));
}

grpc::Status CoordinatorService::Heartbeat(grpc::ServerContext* ctx,
                                           const v1::HeartbeatRequest* req,
                                           v1::HeartbeatResponse*) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (auto s = queue_->Authenticate(req->worker_id(), req->session()); !s.ok())
    return ToGrpcStatus(s);
  return ToGrpcStatus(queue_->Heartbeat(req->worker_id()));
}

grpc::Status CoordinatorService::Deregister(grpc::ServerContext* ctx,
                                            const v1::DeregisterRequest* req,
                                            v1::DeregisterResponse*) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (auto s = queue_->Authenticate(req->worker_id(), req->session()); !s.ok())
    return ToGrpcStatus(s);
  return ToGrpcStatus(queue_->Deregister(req->worker_id()));
}

grpc::Status CoordinatorService::Rendezvous(grpc::ServerContext* ctx,
                                            const v1::RendezvousRequest* req,
                                            v1::RendezvousResponse* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (auto s = queue_->Authenticate(req->worker_id(), req->session()); !s.ok())
    return ToGrpcStatus(s);
  if (rendezvous_store_ == nullptr) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "this learner broadcasts no weights (collective: none)"));
  }
  switch (req->op_case()) {
    case v1::RendezvousRequest::kSet:
      return ToGrpcStatus(rendezvous_store_->Set(req->set().key(), req->set().value()));
    case v1::RendezvousRequest::kGet: {
      absl::StatusOr<std::string> v = rendezvous_store_->Get(req->get());
      if (!v.ok()) return ToGrpcStatus(v.status());
      resp->set_value(std::move(*v));
      return grpc::Status::OK;
    }
    case v1::RendezvousRequest::kAdd: {
      absl::StatusOr<int64_t> v =
          rendezvous_store_->Add(req->add().key(), req->add().delta());
      if (!v.ok()) return ToGrpcStatus(v.status());
      resp->set_number(*v);
      return grpc::Status::OK;
    }
    case v1::RendezvousRequest::kDeleteKey: {
      absl::StatusOr<bool> v = rendezvous_store_->Delete(req->delete_key());
      if (!v.ok()) return ToGrpcStatus(v.status());
      resp->set_yes(*v);
      return grpc::Status::OK;
    }
    case v1::RendezvousRequest::kCheck: {
      if (req->check().keys_size() > 1024) {
        return ToGrpcStatus(absl::InvalidArgumentError("check.keys: at most 1024"));
      }
      absl::StatusOr<bool> v = rendezvous_store_->Check(
          {req->check().keys().begin(), req->check().keys().end()});
      if (!v.ok()) return ToGrpcStatus(v.status());
      resp->set_yes(*v);
      return grpc::Status::OK;
    }
    case v1::RendezvousRequest::kNumKeys: {
      absl::StatusOr<int64_t> v = rendezvous_store_->NumKeys();
      if (!v.ok()) return ToGrpcStatus(v.status());
      resp->set_number(*v);
      return grpc::Status::OK;
    }
    default:
      return ToGrpcStatus(absl::InvalidArgumentError(
          "op: one of set, get, add, delete_key, check or num_keys is required"));
  }
}

grpc::Status CoordinatorService::GetRunStatus(grpc::ServerContext* ctx,
                                              const v1::GetRunStatusRequest*,
                                              v1::RunStatus* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  resp->set_run_id(rendezvous_.run_id);
  resp->set_policy_version(weights_->version());
  resp->set_weights_checksum(weights_->checksum());
  for (const WorkerRecord& w : queue_->Workers()) {
    v1::WorkerStatus* ws = resp->add_workers();
    ws->set_worker_id(w.id);
    ws->set_role(w.role);
    ws->set_name(w.name);
    ws->set_rank(w.rank);
    ws->set_policy_version(w.confirmed_version);
    ws->set_weights_checksum(w.confirmed_checksum);
    ws->set_items_completed(w.items_completed);
  }
  if (status_fn_) status_fn_(resp);
  return grpc::Status::OK;
}

}  // namespace duet
