#include "common/weights/grpc_rendezvous.h"

#include "common/base/status_macros.h"
#include "common/rpc/rpc_util.h"

namespace duet {

GrpcRendezvousClient::GrpcRendezvousClient(
    std::shared_ptr<v1::Coordinator::StubInterface> stub, std::string auth_token,
    std::string worker_id, std::string session, absl::Duration timeout)
    : stub_(std::move(stub)),
      auth_token_(std::move(auth_token)),
      worker_id_(std::move(worker_id)),
      session_(std::move(session)),
      timeout_(timeout) {}

absl::StatusOr<v1::RendezvousResponse> GrpcRendezvousClient::Call(
    v1::RendezvousRequest request) {
  request.set_worker_id(worker_id_);
  request.set_session(session_);
  v1::RendezvousResponse response;
  auto ctx = MakeClientContext(auth_token_, timeout_);
  DUET_RETURN_IF_ERROR(FromGrpcStatus(stub_->Rendezvous(ctx.get(), request, &response)));
  return response;
}

absl::Status GrpcRendezvousClient::Set(const std::string& key, const std::string& value) {
  v1::RendezvousRequest r;
  r.mutable_set()->set_key(key);
  r.mutable_set()->set_value(value);
  return Call(std::move(r)).status();
}

absl::StatusOr<std::string> GrpcRendezvousClient::Get(const std::string& key) {
  v1::RendezvousRequest r;
  r.set_get(key);
  DUET_ASSIGN_OR_RETURN(v1::RendezvousResponse resp, Call(std::move(r)));
  return std::move(*resp.mutable_value());
}

absl::StatusOr<int64_t> GrpcRendezvousClient::Add(const std::string& key, int64_t delta) {
  v1::RendezvousRequest r;
  r.mutable_add()->set_key(key);
  r.mutable_add()->set_delta(delta);
  DUET_ASSIGN_OR_RETURN(v1::RendezvousResponse resp, Call(std::move(r)));
  return resp.number();
}

absl::StatusOr<bool> GrpcRendezvousClient::Delete(const std::string& key) {
  v1::RendezvousRequest r;
  r.set_delete_key(key);
  DUET_ASSIGN_OR_RETURN(v1::RendezvousResponse resp, Call(std::move(r)));
  return resp.yes();
}

absl::StatusOr<bool> GrpcRendezvousClient::Check(const std::vector<std::string>& keys) {
  v1::RendezvousRequest r;
  for (const std::string& k : keys) r.mutable_check()->add_keys(k);
  if (keys.empty()) r.mutable_check();
  DUET_ASSIGN_OR_RETURN(v1::RendezvousResponse resp, Call(std::move(r)));
  return resp.yes();
}

absl::StatusOr<int64_t> GrpcRendezvousClient::NumKeys() {
  v1::RendezvousRequest r;
  r.set_num_keys(true);
  DUET_ASSIGN_OR_RETURN(v1::RendezvousResponse resp, Call(std::move(r)));
  return resp.number();
}

}  // namespace duet
