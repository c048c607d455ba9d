#include "coordinator/coordinator_service.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "rpc/rpc_util.h"

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

grpc::Status CoordinatorService::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                                          v1::RegisterResponse* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (req->role() != v1::ROLE_ROLLOUT && req->role() != v1::ROLE_SCORER) {
    return ToGrpcStatus(absl::InvalidArgumentError("role: must be ROLE_ROLLOUT or ROLE_SCORER"));
  }
  if (req->capacity() < 0 || req->capacity() > limits_.max_rows) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        absl::StrCat("capacity: must be in [0, ", limits_.max_rows, "], got ", req->capacity())));
  }
  if (req->name().size() > 256) return ToGrpcStatus(absl::InvalidArgumentError("name: longer than 256 bytes"));
  WorkerRecord w = queue_->Register(req->role(), req->name(), req->capacity());
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
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::PullWork(grpc::ServerContext* ctx, const v1::PullWorkRequest* req,
                                          v1::PullWorkResponse* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (req->wait_ms() < 0 || req->wait_ms() > 10000) {
    return ToGrpcStatus(absl::InvalidArgumentError("wait_ms: must be in [0, 10000]"));
  }
  auto item = queue_->Pull(req->worker_id(), absl::Milliseconds(req->wait_ms()));
  if (absl::IsCancelled(item.status())) {
    resp->set_shutdown(true);
    return grpc::Status::OK;
  }
  if (!item.ok()) return ToGrpcStatus(item.status());
  if (item->has_value()) *resp->mutable_item() = std::move(**item);
  return grpc::Status::OK;
}

absl::Status CoordinatorService::ValidateResult(const v1::CompleteWorkRequest& req) const {
  auto check_ids = [this](const v1::TokenSeq& seq, const std::string& field) -> absl::Status {
    if (seq.ids_size() > limits_.max_sequence_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", seq.ids_size(), " tokens, at most ",
                                                     limits_.max_sequence_tokens));
    }
    for (int64_t id : seq.ids()) {
      if (id < 0 || id >= limits_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": token id ", id, " outside [0, ",
                                                       limits_.vocab_size, ")"));
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
          const std::string field = absl::StrCat("rollout.groups[", g, "].samples[", s, "]");
          if (auto st = check_ids(sample.output(), field + ".output"); !st.ok()) return st;
          if (sample.policy_logprobs_size() != sample.output().ids_size()) {
            return absl::InvalidArgumentError(field + ".policy_logprobs: one per output token required");
          }
          for (float lp : sample.policy_logprobs()) {
            if (!std::isfinite(lp) || lp > 0) {
              return absl::InvalidArgumentError(field + ".policy_logprobs: must be finite and <= 0");
            }
          }
        }
      }
      return absl::OkStatus();
    case v1::CompleteWorkRequest::kScore:
      for (int i = 0; i < req.score().rewards_size(); ++i) {
        if (!std::isfinite(req.score().rewards(i))) {
          return absl::InvalidArgumentError(absl::StrCat("score.rewards[", i, "]: not finite"));
        }
      }
      return absl::OkStatus();
    case v1::CompleteWorkRequest::kSync:
    case v1::CompleteWorkRequest::kError:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("result: one of rollout, score, sync or error is required");
  }
}

grpc::Status CoordinatorService::CompleteWork(grpc::ServerContext* ctx,
                                              const v1::CompleteWorkRequest* req,
                                              v1::CompleteWorkResponse* resp) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  if (auto s = ValidateResult(*req); !s.ok()) return ToGrpcStatus(s);
  resp->set_accepted(queue_->Complete(*req));
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::FetchWeights(grpc::ServerContext* ctx,
                                              const v1::FetchWeightsRequest* req,
                                              grpc::ServerWriter<v1::WeightChunk>* writer) {
  if (auto s = CheckToken(*ctx, auth_token_); !s.ok()) return ToGrpcStatus(s);
  return ToGrpcStatus(StreamWeightSnapshot(
      *weights_, req->chunk_bytes(), [ctx] { return ctx->IsCancelled(); },
      [writer](const v1::WeightChunk& c) { return writer->Write(c); }));
}

grpc::Status CoordinatorService::GetRunStatus(grpc::ServerContext* ctx, const v1::GetRunStatusRequest*,
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
