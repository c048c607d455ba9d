#ifndef DUET_COMMON_RPC_HEALTH_SERVER_H_
#define DUET_COMMON_RPC_HEALTH_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace duet {

// A gRPC server for processes whose real work is client-side (rollout and scorer
// workers): the standard health service (grpc.health.v1) plus `service` (a status
// service; gRPC's synchronous server needs at least one service of its own). `address`
// such as "0.0.0.0:0"; the bound port is written to `*port`.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthServer(
    const std::string& address, grpc::Service* service, int* port);

// A server of the standard health service (grpc.health.v1) alone, plaintext, on its own
// address, for probes of a process whose main port may be TLS (duet-learner
// --health_address). The bound port is written to `*port`.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnlyServer(
    const std::string& address, int* port);

// The grpc.health.v1 service name of readiness (deploy/k8s readinessProbe `service:`).
inline constexpr char kReadinessService[] = "duet.ready";

// What a process's probes see (deploy/k8s), on the default health service of a server
// started above:
//   liveness, service "" : SERVING while the process's main loop has called Beat() within
//     `stall_after` of this clock (a training loop or worker loop that hangs turns
//     NOT_SERVING, and the kubelet restarts the container); 0 never stalls.
//   readiness, service "duet.ready": NOT_SERVING until SetReady(true); what "ready" means
//     is the role's: a learner that is stepping (its pools formed, not stopping), a
//     worker registered with the learner.
// A watchdog thread re-evaluates liveness every second of `clock`.
//
// Thread-safety: thread-safe.
class HealthReporter {
 public:
  // REQUIRES: `server` was started by StartHealthServer or StartHealthOnlyServer and
  // outlives this; `clock` is not null and outlives this.
  HealthReporter(grpc::Server* server, Clock* clock, absl::Duration stall_after);
  // Joins the watchdog; the statuses stay as they were.
  ~HealthReporter();
  HealthReporter(const HealthReporter&) = delete;
  HealthReporter& operator=(const HealthReporter&) = delete;

  // The main loop is making progress.
  void Beat();
  void SetReady(bool ready);
  bool live() const;
  bool ready() const;

 private:
  // Sets both statuses on the server from the state.
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Watch();

  grpc::HealthCheckServiceInterface* const health_;
  Clock* const clock_;
  const absl::Duration stall_after_;
  mutable absl::Mutex mu_;
  absl::Time last_beat_ ABSL_GUARDED_BY(mu_);
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool live_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watchdog_;
};

// Asks `channel`'s grpc.health.v1 service about `service` (probes and tests): the status
// name ("SERVING", "NOT_SERVING", ...), or the call's error (NOT_FOUND: a service the
// server does not know). `timeout` bounds the call.
absl::StatusOr<std::string> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                        const std::string& service,
                                        absl::Duration timeout);

}  // namespace duet

#endif  // DUET_COMMON_RPC_HEALTH_SERVER_H_
