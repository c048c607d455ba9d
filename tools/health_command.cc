// `duet health`: asks a Duet process's grpc.health.v1 service what the probes see
// (deploy/k8s: readiness is service "duet.ready", liveness ""), for operators without
// grpc_health_probe (not in Debian) and for the tests. Prints the status; exits 0 when
// SERVING, 1 otherwise (NOT_SERVING, an unknown service, no answer).

#include <gflags/gflags.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "absl/time/time.h"
#include "common/rpc/health_server.h"
#include "tools/commands.h"

DEFINE_string(
    address, "",
    "health: HOST:PORT of the process's plaintext health server (--health_address)");
DEFINE_string(service, duet::kReadinessService,
              "health: the service to ask: duet.ready (readiness) or \"\" (liveness)");
DEFINE_int32(timeout_s, 5, "health: how long to wait for the answer");

namespace duet {

int RunHealth() {
  if (FLAGS_address.empty()) {
    std::fprintf(stderr, "duet health: give --address=HOST:PORT\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(FLAGS_address, grpc::InsecureChannelCredentials());
  absl::StatusOr<std::string> status =
      CheckHealth(channel, FLAGS_service, absl::Seconds(FLAGS_timeout_s));
  if (!status.ok()) {
    std::printf("%s\n", status.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", status->c_str());
  return *status == "SERVING" ? 0 : 1;
}

}  // namespace duet
