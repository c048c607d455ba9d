#ifndef DUET_RPC_HEALTH_SERVER_H_
#define DUET_RPC_HEALTH_SERVER_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace duet {

// A gRPC server for processes whose real work is client-side (rollout and scorer
// workers): the standard health service (grpc.health.v1) plus `service` (a status
// service; gRPC's synchronous server needs at least one service of its own). `address`
// such as "0.0.0.0:0"; the bound port is written to `*port`.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthServer(const std::string& address,
                                                                grpc::Service* service, int* port);

// A server of the standard health service (grpc.health.v1) alone, plaintext, on its own
// address, for probes of a process whose main port may be TLS (duet-learner
// --health_address). The bound port is written to `*port`.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnlyServer(const std::string& address, int* port);

}  // namespace duet

#endif  // DUET_RPC_HEALTH_SERVER_H_
