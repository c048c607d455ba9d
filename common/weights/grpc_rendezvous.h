#ifndef DUET_COMMON_WEIGHTS_GRPC_RENDEZVOUS_H_
#define DUET_COMMON_WEIGHTS_GRPC_RENDEZVOUS_H_

// A worker's side of the learner's rendezvous store (common/weights/rendezvous_store.h):
// each operation is one Coordinator.Rendezvous call carrying the run token and the
// worker's session, under `timeout`. Codes come back as the learner sent them (NotFound
// for an absent key, PermissionDenied, ResourceExhausted, Unauthenticated...).
//
// Thread-safety: thread-safe (the stub is).

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/weights/rendezvous_store.h"
#include "duet/v1/coordinator.grpc.pb.h"

namespace duet {

class GrpcRendezvousClient final : public RendezvousClient {
 public:
  GrpcRendezvousClient(std::shared_ptr<v1::Coordinator::StubInterface> stub,
                       std::string auth_token, std::string worker_id, std::string session,
                       absl::Duration timeout);

  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> Get(const std::string& key) override;
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t delta) override;
  absl::StatusOr<bool> Delete(const std::string& key) override;
  absl::StatusOr<bool> Check(const std::vector<std::string>& keys) override;
  absl::StatusOr<int64_t> NumKeys() override;

 private:
  absl::StatusOr<v1::RendezvousResponse> Call(v1::RendezvousRequest request);

  const std::shared_ptr<v1::Coordinator::StubInterface> stub_;
  const std::string auth_token_;
  const std::string worker_id_;
  const std::string session_;
  const absl::Duration timeout_;
};

}  // namespace duet

#endif  // DUET_COMMON_WEIGHTS_GRPC_RENDEZVOUS_H_
